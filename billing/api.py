"""Partners read their own invoices (JSON, HTML, PDF, CSV) and their statement."""

from __future__ import annotations

import uuid
from dataclasses import asdict
from typing import Any

from django.conf import settings
from django.db.models import QuerySet
from django.http import HttpResponse, StreamingHttpResponse
from django.utils.decorators import method_decorator
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import generics, serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from billing import documents, outcomes, statements
from billing.models import Currency, Invoice, InvoiceLine, InvoiceStatus
from marketplace import events
from marketplace.api import EventInput, LeadEventOutput, partner_leads
from marketplace.models import Lead
from partners.authentication import IsPartnerKey, client
from partners.errors import ApiError
from partners.idempotency import idempotent
from partners.key_mode import require_live_billing
from partners.reconnect import repeatable
from partners.scoping import Mode, visible_to

# An outcome reported while its lead's post is still being recorded: retry after this.
DELIVERY_RETRY_SECONDS = 2


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
    return visible_to(
        Invoice.objects.exclude(status=InvoiceStatus.DRAFT).prefetch_related("lines"),
        request,
        partner="partner_id",
        sandbox=Mode.LIVE_ONLY,
    )


class PartnerInvoiceListView(generics.ListAPIView):
    permission_classes = [IsPartnerKey]
    serializer_class = InvoiceOutput

    def get_queryset(self) -> QuerySet[Invoice]:
        if getattr(self, "swagger_fake_view", False):  # schema generation: no request key
            return Invoice.objects.none()
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
    @method_decorator(documents.html_document_policy)
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
        parameters=[
            OpenApiParameter(
                "currency", str, description=f"ISO 4217 code; default {settings.DEFAULT_CURRENCY}"
            )
        ],
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


class PartnerLeadEventView(APIView):
    permission_classes = [IsPartnerKey]

    @extend_schema(
        tags=["partner"],
        summary="Report an outcome on one of your leads",
        description="Idempotent by `event_id`: sending the same event again returns 200 with "
        "the stored event. Events may arrive in any order.\n\n"
        "A `reversal` takes back one of your earlier events on the same lead, named by its "
        "`event_id` in `reverses`: the reversed event no longer counts, the lead's status is "
        "recomputed from the events still standing (a reversed `funded` may be reported "
        "again with a new event_id), and fees charged for it are credited. A reversal cannot "
        "be reversed, and an event is reversed at most once (409 `already_reversed`); an "
        "unknown `reverses` is 422 `reversed_event_not_found`.\n\n"
        "A `revenue` event reports what you earned on a funded loan in one month (interest "
        "and fees actually collected) in `amount`, with the month in `period` "
        "(YYYY-MM, default the month of `occurred_at`); the revenue share of your fee "
        "schedule is charged on it. Only on a funded lead (422 `lead_not_funded`), at most "
        "the funded principal, one per lead and period (409 `duplicate_revenue_period`; "
        "reverse it to correct it). It does not change the lead's status; a funding with "
        "revenue reported cannot be reversed (422 `revenue_reported`).\n\n"
        "Every amount carries its currency: `currency` (CNY, HKD, USD or EUR) is the currency "
        "of `amount` and `principal`; without it they are in the lead's loan currency "
        "(`loan.currency`, the currency of the referral). Events without an amount or a "
        "principal carry no currency (sending one is a 422); an unknown currency is a 400. "
        "Amounts are compared only within one currency: a `funded` principal in another "
        "currency than the standing `approved` amount (or the other way round), or `revenue` "
        "in another currency than the funded principal, is 422 `currency_mismatch`. Fees are "
        "booked in your fee schedule's currency, converted at the exchange rate in force at "
        "`occurred_at`. A replay of an `event_id` in another currency is 409 "
        "`event_id_conflict`.",
        request=EventInput,
        responses={
            201: LeadEventOutput,
            200: LeadEventOutput,
            400: OpenApiResponse(description="Invalid fields"),
            404: OpenApiResponse(description="Not your lead"),
            409: OpenApiResponse(
                description="event_id reused for another event, a second event of one type, "
                "a second revenue event for one period, an event already reversed, or "
                "`delivery_in_progress`: the lead's delivery to you is still being recorded "
                "(send the same event again after `Retry-After` seconds)"
            ),
            422: OpenApiResponse(
                description="Valid JSON, but not applicable to this lead (the code says why)"
            ),
        },
        examples=[
            OpenApiExample(
                "Revenue earned in a month",
                request_only=True,
                value={
                    "event_id": "loan-88412-revenue-2026-12",
                    "type": "revenue",
                    "occurred_at": "2027-01-03T09:00:00Z",
                    "amount": "142.60",
                    "period": "2026-12",
                },
            ),
            OpenApiExample(
                "Reversal of a funding",
                request_only=True,
                value={
                    "event_id": "loan-88412-funding-cancelled",
                    "type": "reversal",
                    "occurred_at": "2026-11-23T09:00:00Z",
                    "reverses": "loan-88412-funded",
                },
            ),
            OpenApiExample(
                "Funded",
                request_only=True,
                value={
                    "event_id": "loan-88412-funded",
                    "type": "funded",
                    "occurred_at": "2026-11-22T10:00:00Z",
                    "principal": "8000.00",
                    "currency": "CNY",
                },
            ),
        ],
    )
    @idempotent
    # Safe to run again after a lost connection, keyed or not: an event is stored once per
    # partner and event id (unique constraint event_once_per_partner_id) in the transaction
    # that charges it, so a run after a commit whose answer was lost replays the event.
    @repeatable()
    def post(self, request: Request, lead_id: uuid.UUID) -> Response:
        partner_id = client(request).partner_id
        assert partner_id is not None  # IsPartnerKey
        serializer = EventInput(data=request.data)
        if not serializer.is_valid():
            # Not the caller's lead: 404 whatever it sent (validation must not say first
            # that the lead exists). The valid path looks the lead up once, below.
            if not partner_leads(request).filter(pk=lead_id).exists():
                raise ApiError(
                    "Not found.", code="not_found", status_code=status.HTTP_404_NOT_FOUND
                )
            serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        report = events.EventReport(
            external_id=data["event_id"],
            type=data["type"],
            occurred_at=data["occurred_at"],
            amount=data.get("amount"),
            apr=data.get("apr"),
            principal=data.get("principal"),
            currency=data.get("currency") or "",
            reason=data.get("reason", ""),
            reverses=data.get("reverses", ""),
            period=data.get("period", ""),
        )
        try:
            # The lead is looked up (and locked) once, scoped to the key: another
            # partner's lead, or one of the key's other mode, is not found.
            event, created = outcomes.report_outcome(
                lead_id=lead_id,
                partner_id=partner_id,
                report=report,
                leads=partner_leads(request).select_related(None),
            )
        except Lead.DoesNotExist:
            raise ApiError(
                "Not found.", code="not_found", status_code=status.HTTP_404_NOT_FOUND
            ) from None
        except events.EventError as exc:
            conflict = exc.code in {
                "event_id_conflict",
                "duplicate_event_type",
                "already_reversed",
                "duplicate_revenue_period",
                "delivery_in_progress",
            }
            raise ApiError(
                str(exc),
                code=exc.code,
                details={exc.field: [str(exc)]} if exc.field else None,
                status_code=status.HTTP_409_CONFLICT
                if conflict
                else status.HTTP_422_UNPROCESSABLE_ENTITY,
                retry_after=DELIVERY_RETRY_SECONDS if exc.code == "delivery_in_progress" else None,
            ) from None
        return Response(
            LeadEventOutput(event).data,
            status=status.HTTP_201_CREATED if created else status.HTTP_200_OK,
        )
