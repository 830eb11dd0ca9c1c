"""The partner's invoices and credit notes (issued only, with their PDFs), its statement and
its payments. Billing is live only: in sandbox mode these pages are empty."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404
from django.views.decorators.http import require_http_methods

from billing import documents, statements
from portal import selectors
from portal.access import portal_of, portal_view
from portal.forms import StatementForm
from portal.views.common import page_of, query_without_page, show


@require_http_methods(["GET"])
@portal_view()
def invoice_list(request: HttpRequest) -> HttpResponse:
    portal = portal_of(request)
    return show(
        request,
        "invoices.html",
        {
            "page": page_of(request, selectors.invoices(portal)),
            "credit_notes": selectors.credit_notes(portal)[:50],
            "query": query_without_page(request),
        },
    )


@require_http_methods(["GET"])
@portal_view()
def invoice_detail(request: HttpRequest, invoice_id: uuid.UUID) -> HttpResponse:
    portal = portal_of(request)
    invoice = get_object_or_404(selectors.invoices(portal).prefetch_related("lines"), pk=invoice_id)
    return show(
        request,
        "invoice_detail.html",
        {
            "invoice": invoice,
            "lines": invoice.lines.all(),
            "credit_notes": selectors.credit_notes(portal).filter(invoice=invoice),
        },
    )


def _pdf(body: bytes, filename: str) -> HttpResponse:
    response = HttpResponse(body, content_type="application/pdf")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


@require_http_methods(["GET"])
@portal_view()
def invoice_pdf(request: HttpRequest, invoice_id: uuid.UUID) -> HttpResponse:
    portal = portal_of(request)
    invoice = get_object_or_404(selectors.invoices(portal).select_related("partner"), pk=invoice_id)
    return _pdf(documents.render_pdf(invoice), f"{invoice.number or invoice.pk}.pdf")


@require_http_methods(["GET"])
@portal_view()
def credit_note_pdf(request: HttpRequest, note_id: uuid.UUID) -> HttpResponse:
    portal = portal_of(request)
    note = get_object_or_404(selectors.credit_notes(portal).select_related("partner"), pk=note_id)
    return _pdf(documents.render_credit_note_pdf(note), f"{note.number}.pdf")


@require_http_methods(["GET"])
@portal_view()
def statement(request: HttpRequest) -> HttpResponse:
    portal = portal_of(request)
    form = StatementForm(request.GET or None)
    currency = settings.DEFAULT_CURRENCY
    if form.is_valid() and form.cleaned_data.get("currency"):
        currency = form.cleaned_data["currency"]
    elif request.GET and not form.is_valid():
        return show(request, "statement.html", {"form": form, "statement": None}, status=400)
    result = (
        None
        if portal.sandbox
        else statements.statement(partner_id=portal.partner.pk, currency=currency)
    )
    return show(
        request, "statement.html", {"form": form, "statement": result, "currency": currency}
    )


@require_http_methods(["GET"])
@portal_view()
def payment_list(request: HttpRequest) -> HttpResponse:
    portal = portal_of(request)
    return show(
        request,
        "payments.html",
        {
            "page": page_of(request, selectors.payments(portal)),
            "query": query_without_page(request),
        },
    )
