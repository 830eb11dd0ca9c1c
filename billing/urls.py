"""Billing's partner API routes (included by the project URLconf, ``marketplace.urls``)."""

from django.urls import path

from billing import api

urlpatterns = [
    path(
        "partner/leads/<uuid:lead_id>/events",
        api.PartnerLeadEventView.as_view(),
        name="partner-lead-events",
    ),
    path("partner/invoices", api.PartnerInvoiceListView.as_view(), name="partner-invoice-list"),
    path(
        "partner/invoices/<uuid:pk>",
        api.PartnerInvoiceDetailView.as_view(),
        name="partner-invoice-detail",
    ),
    path(
        "partner/invoices/<uuid:pk>/pdf",
        api.PartnerInvoicePdfView.as_view(),
        name="partner-invoice-pdf",
    ),
    path(
        "partner/invoices/<uuid:pk>/csv",
        api.PartnerInvoiceCsvView.as_view(),
        name="partner-invoice-csv",
    ),
    path(
        "partner/invoices/<uuid:pk>/html",
        api.PartnerInvoiceHtmlView.as_view(),
        name="partner-invoice-html",
    ),
    path("partner/statement", api.PartnerStatementView.as_view(), name="partner-statement"),
]
