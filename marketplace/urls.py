from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from billing import api as billing_api
from consent import api as consent_api
from marketplace import api

api_v1 = [
    path("referrals", api.ReferralCreateView.as_view(), name="referral-create"),
    path("referrals/<uuid:pk>", api.ReferralDetailView.as_view(), name="referral-detail"),
    path(
        "consents/<uuid:receipt_id>",
        consent_api.ConsentReceiptView.as_view(),
        name="consent-receipt",
    ),
    path(
        "consents/<uuid:receipt_id>/withdraw",
        consent_api.ConsentWithdrawView.as_view(),
        name="consent-withdraw",
    ),
    path("ledger/public-key", consent_api.LedgerPublicKeyView.as_view(), name="ledger-public-key"),
    path("partner/leads", api.PartnerLeadListView.as_view(), name="partner-lead-list"),
    path(
        "partner/leads/<uuid:lead_id>",
        api.PartnerLeadDetailView.as_view(),
        name="partner-lead-detail",
    ),
    path(
        "partner/leads/<uuid:lead_id>/events",
        api.PartnerLeadEventView.as_view(),
        name="partner-lead-events",
    ),
    path(
        "partner/invoices",
        billing_api.PartnerInvoiceListView.as_view(),
        name="partner-invoice-list",
    ),
    path(
        "partner/invoices/<uuid:pk>",
        billing_api.PartnerInvoiceDetailView.as_view(),
        name="partner-invoice-detail",
    ),
]

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="swagger-ui"),
    path("api/v1/", include(api_v1)),
]
