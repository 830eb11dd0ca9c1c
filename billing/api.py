"""Partners read their own invoices (JSON, HTML, PDF, CSV) and their statement."""

from __future__ import annotations

import uuid
from dataclasses import asdict
from typing import Any

from django.conf import settings
from django.db.models import QuerySet
from django.http import HttpResponse, StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import generics, serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from billing import documents, statements
from billing.models import Currency, Invoice, InvoiceLine, InvoiceStatus
from partners.authentication import IsPartnerKey, client
from partners.errors import ApiError
from partners.scoping import Mode, require_live_billing, scoped


class InvoiceLineOutput(serializers.ModelSerializer):
    class Meta:
        model = InvoiceLine
        fields = ["description", "kind", "entry_type", "product_id", "quantity", "amount"]


class InvoiceOutput(serializers.ModelSerializer):
    lines = InvoiceLineOutput(many=True)

    class Meta:
        model = Invoice
        fields = [
            "id",
            "number",
            "status",
            "currency",
            "period_start",
            "subtotal",
            "tax_rate",
            "tax",
            "total",
            "issued_at",
            "due_date",
            "lines",
        ]


def partner_invoices(request: Request) -> QuerySet[Invoice]:
    """The caller's issued invoices (drafts are the operator's working copies). Billing is
    live only (sandbox traffic is never charged): a sandbox key has none."""
    return scoped(
        Invoice.objects.exclude(status=InvoiceStatus.DRAFT).prefetch_related("lines"),
        request,
        partner="partner_id",
        sandbox=Mode.LIVE_ONLY,
    )


class PartnerInvoiceListView(generics.ListAPIView):
    permission_classes = [IsPartnerKey]
    serializer_class = InvoiceOutput

    def get_queryset(self) -> QuerySet[Invoice]:
        return partner_invoices(self.request)

    @extend_schema(
        tags=["partner"],
        summary="Your issued invoices",
        description="Live only: sandbox traffic is never charged, so a sandbox key gets an "
        "empty list (and a 404 for any invoice id).",
    )
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().get(request, *args, **kwargs)


class PartnerInvoiceDetailView(generics.RetrieveAPIView):
    permission_classes = [IsPartnerKey]
    serializer_class = InvoiceOutput

    def get_queryset(self) -> QuerySet[Invoice]:
        return partner_invoices(self.request)

    @extend_schema(tags=["partner"], summary="One of your invoices")
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().get(request, *args, **kwargs)


def _own_invoice(request: Request, pk: uuid.UUID) -> Invoice:
    invoice = partner_invoices(request).select_related("partner").filter(pk=pk).first()
    if invoice is None:
        raise ApiError("Not found.", code="not_found", status_code=status.HTTP_404_NOT_FOUND)
    return invoice


def _filename(invoice: Invoice, extension: str) -> str:
    return f"{invoice.number or invoice.id}.{extension}"


class PartnerInvoiceHtmlView(APIView):
    permission_classes = [IsPartnerKey]

    @extend_schema(
        tags=["partner"],
        summary="One of your invoices as HTML",
        responses={(200, "text/html"): OpenApiTypes.STR},
    )
    def get(self, request: Request, pk: uuid.UUID) -> HttpResponse:
        invoice = _own_invoice(request, pk)
        return HttpResponse(documents.render_html(invoice), content_type="text/html; charset=utf-8")


class PartnerInvoicePdfView(APIView):
    permission_classes = [IsPartnerKey]

    @extend_schema(
        tags=["partner"],
        summary="One of your invoices as PDF",
        responses={(200, "application/pdf"): OpenApiTypes.BINARY},
    )
    def get(self, request: Request, pk: uuid.UUID) -> HttpResponse:
        invoice = _own_invoice(request, pk)
        response = HttpResponse(documents.render_pdf(invoice), content_type="application/pdf")
        response["Content-Disposition"] = f'attachment; filename="{_filename(invoice, "pdf")}"'
        return response


class PartnerInvoiceCsvView(APIView):
    permission_classes = [IsPartnerKey]

    @extend_schema(
        tags=["partner"],
        summary="Your invoice's detail lines as CSV",
        responses={(200, "text/csv"): OpenApiTypes.STR},
    )
    def get(self, request: Request, pk: uuid.UUID) -> StreamingHttpResponse:
        invoice = _own_invoice(request, pk)
        response = StreamingHttpResponse(
            documents.csv_stream(invoice), content_type="text/csv; charset=utf-8"
        )
        response["Content-Disposition"] = f'attachment; filename="{_filename(invoice, "csv")}"'
        return response


class AgingOutput(serializers.Serializer):
    current = serializers.DecimalField(max_digits=13, decimal_places=2)
    days_0_30 = serializers.DecimalField(max_digits=13, decimal_places=2)
    days_31_60 = serializers.DecimalField(max_digits=13, decimal_places=2)
    days_61_90 = serializers.DecimalField(max_digits=13, decimal_places=2)
    days_over_90 = serializers.DecimalField(max_digits=13, decimal_places=2)


class OpenItemOutput(serializers.Serializer):
    invoice_id = serializers.UUIDField()
    number = serializers.CharField()
    due_date = serializers.DateField()
    total = serializers.DecimalField(max_digits=13, decimal_places=2)
    credited = serializers.DecimalField(max_digits=13, decimal_places=2)
    allocated = serializers.DecimalField(max_digits=13, decimal_places=2)
    open_amount = serializers.DecimalField(max_digits=13, decimal_places=2)
    days_overdue = serializers.IntegerField()
    bucket = serializers.CharField()


class StatementOutput(serializers.Serializer):
    currency = serializers.CharField()
    as_of = serializers.DateField()
    invoiced = serializers.DecimalField(max_digits=13, decimal_places=2)
    credited = serializers.DecimalField(max_digits=13, decimal_places=2)
    paid = serializers.DecimalField(max_digits=13, decimal_places=2)
    unapplied = serializers.DecimalField(max_digits=13, decimal_places=2)
    balance = serializers.DecimalField(
        max_digits=13,
        decimal_places=2,
        help_text="invoiced - credited - paid: what you owe now (negative: in credit)",
    )
    drafts = serializers.DecimalField(
        max_digits=13, decimal_places=2, help_text="totals of invoices made but not issued yet"
    )
    uninvoiced = serializers.DecimalField(
        max_digits=13,
        decimal_places=2,
        help_text="fees and corrections on no invoice or credit note yet, with VAT as an "
        "invoice computes it",
    )
    exposure = serializers.DecimalField(
        max_digits=13,
        decimal_places=2,
        help_text="balance + drafts + uninvoiced: what your credit limit is checked against",
    )
    aging = AgingOutput()
    items = OpenItemOutput(many=True)


AGING_NAMES = {
    "current": "current",
    "0-30": "days_0_30",
    "31-60": "days_31_60",
    "61-90": "days_61_90",
    "90+": "days_over_90",
}


class PartnerStatementView(APIView):
    permission_classes = [IsPartnerKey]

    @extend_schema(
        tags=["partner"],
        summary="Your statement: balance and aging by due date",
        description="Live only: sandbox traffic is never charged, so a sandbox key gets a "
        "404 with code `no_sandbox_billing`.",
        parameters=[OpenApiParameter("currency", str, description="ISO 4217 code; default CNY")],
        responses={
            200: StatementOutput,
            404: OpenApiResponse(description="`no_sandbox_billing`: called with a sandbox key"),
        },
    )
    def get(self, request: Request) -> Response:
        partner_id = client(request).partner_id
        assert partner_id is not None  # IsPartnerKey
        require_live_billing(request)
        currency = request.query_params.get("currency", settings.DEFAULT_CURRENCY).upper()
        if currency not in Currency.values:
            raise ApiError(
                f"unknown currency {currency!r}",
                code="unknown_currency",
                details={"currency": [f"one of {', '.join(Currency.values)}"]},
            )
        result = statements.statement(partner_id=partner_id, currency=currency)
        data = asdict(result)
        data["aging"] = {AGING_NAMES[name]: value for name, value in result.aging.items()}
        return Response(StatementOutput(data).data)
