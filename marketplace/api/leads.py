"""Partner side of the API: the caller's leads (scoped to the key's mode by
:func:`partner_leads`), one lead with the applicant's data when it was delivered (a logged
disclosure), its outcome events, and the input of an event the partner reports.
"""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

from django.db.models import Prefetch, QuerySet
from django_filters import rest_framework as filters
from drf_spectacular.utils import extend_schema
from rest_framework import generics, serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from consent.gate import DisclosureRefused
from marketplace import events, pull
from marketplace.bands import age_band_label, income_band_label
from marketplace.models import EventType, Lead, LeadEvent, LeadStatus
from partners.authentication import IsPartnerKey
from partners.currencies import Currency
from partners.fields import StrictDecimalField
from partners.key_mode import acting_key
from partners.query_params import UtcDateTimeFilter
from partners.scoping import visible_to


class LeadEventOutput(serializers.ModelSerializer):
    event_id = serializers.CharField(source="external_id")
    reverses = serializers.CharField(
        source="reverses.external_id",
        allow_null=True,
        default=None,
        help_text="For a reversal: the event_id of the event it takes back",
    )
    period = serializers.CharField(
        source="revenue_period",
        read_only=True,
        help_text="For a revenue event: the month the revenue was earned, YYYY-MM",
    )
    reversed_by = serializers.SerializerMethodField(
        help_text="The event_id of the reversal that took this event back, if any"
    )
    currency = serializers.CharField(
        read_only=True,
        help_text="ISO 4217 code of amount and principal (empty when the event has neither)",
    )

    class Meta:
        model = LeadEvent
        fields = [
            "id",
            "event_id",
            "type",
            "occurred_at",
            "received_at",
            "amount",
            "apr",
            "principal",
            "currency",
            "reason",
            "reverses",
            "reversed_by",
            "period",
        ]

    def get_reversed_by(self, event: LeadEvent) -> str | None:
        reversal = getattr(event, "reversed_by", None)
        return reversal.external_id if reversal is not None else None


class PartnerLeadOutput(serializers.ModelSerializer):
    loan = serializers.SerializerMethodField()
    risk_tier = serializers.CharField(source="referral.risk_tier")
    region = serializers.CharField(source="referral.region")
    age_band = serializers.SerializerMethodField(
        help_text="The applicant's age band: 18-24, 25-34, 35-44, 45-54, 55-64 or 65-120 "
        "(under-18 and over-120 only for a stored age outside them)"
    )
    income_band = serializers.SerializerMethodField(
        help_text="The applicant's monthly income band (CNY): 0-2999, 3000-4999, 5000-9999, "
        "10000-19999, 20000-49999 or 50000+"
    )
    product_id = serializers.UUIDField()
    bid_amount = serializers.DecimalField(
        max_digits=13,
        decimal_places=2,
        read_only=True,
        allow_null=True,
        help_text="Your winning bid, for a lead you won at a ping-post auction (your CPL)",
    )
    bid_currency = serializers.CharField(
        read_only=True, help_text="ISO 4217 code of bid_amount (empty without a bid)"
    )

    class Meta:
        model = Lead
        fields = [
            "id",
            "status",
            "is_sandbox",
            "delivery_mode",
            "product_id",
            "bid_amount",
            "bid_currency",
            "loan",
            "risk_tier",
            "region",
            "age_band",
            "income_band",
            "partner_reference",
            "created_at",
            "delivered_at",
        ]

    def get_loan(self, lead: Lead) -> dict[str, Any]:
        referral = lead.referral
        return {
            "amount": str(referral.amount),
            "currency": referral.currency,
            "term_months": referral.term_months,
            "purpose": referral.purpose,
        }

    def get_age_band(self, lead: Lead) -> str:
        return age_band_label(lead.referral.age)

    def get_income_band(self, lead: Lead) -> str:
        return income_band_label(lead.referral.income_band_floor)


class PartnerLeadDetailOutput(PartnerLeadOutput):
    applicant = serializers.DictField(child=serializers.CharField(), allow_null=True)
    applicant_unavailable = serializers.CharField(
        help_text="Why applicant is null: consent_withdrawn, consent_expired, subject_erased, "
        "... (empty when the data is included or the lead was never delivered to you)"
    )
    consent = serializers.SerializerMethodField()
    events = LeadEventOutput(many=True)

    class Meta(PartnerLeadOutput.Meta):
        fields = [
            *PartnerLeadOutput.Meta.fields,
            "applicant",
            "applicant_unavailable",
            "consent",
            "events",
        ]

    def get_consent(self, lead: Lead) -> dict[str, Any] | None:
        grant = lead.referral.grant
        if grant is None:
            return None
        return {
            "receipt_id": str(grant.id),
            "text_version": grant.text.version,
            "text_sha256": grant.text_sha256,
            "text": grant.text.body,
        }


class LeadFilter(filters.FilterSet):
    status = filters.ChoiceFilter(choices=LeadStatus.choices)
    created_after = UtcDateTimeFilter(field_name="created_at", lookup_expr="gte")
    created_before = UtcDateTimeFilter(field_name="created_at", lookup_expr="lt")
    is_sandbox = filters.BooleanFilter()

    class Meta:
        model = Lead
        fields = ["status", "is_sandbox"]


def partner_leads(request: Request) -> QuerySet[Lead]:
    """Every partner-facing lead query starts here: the caller's leads of the calling key's
    mode (a sandbox key sandbox leads only, a live key live leads only)."""
    return visible_to(
        Lead.objects.select_related("referral__grant__text"),
        request,
        partner="partner_id",
        sandbox="is_sandbox",
    )


class PartnerLeadListView(generics.ListAPIView):
    permission_classes = [IsPartnerKey]
    serializer_class = PartnerLeadOutput
    filterset_class = LeadFilter

    def get_queryset(self) -> QuerySet[Lead]:
        if getattr(self, "swagger_fake_view", False):
            # Schema generation has no API key; the model is enough for the filter params.
            return Lead.objects.none()
        return partner_leads(self.request)

    @extend_schema(tags=["partner"], summary="Your leads (no personal data in the list)")
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().get(request, *args, **kwargs)


class PartnerLeadDetailView(APIView):
    permission_classes = [IsPartnerKey]

    @extend_schema(
        tags=["partner"],
        summary="One of your leads, with the applicant's data when it was delivered to you",
        description="Reading the applicant's data is a disclosure under the applicant's "
        "consent and is logged. A pull-mode lead becomes delivered on first read.",
        responses={200: PartnerLeadDetailOutput},
    )
    def get(self, request: Request, lead_id: uuid.UUID) -> Response:
        events_with_reversals = LeadEvent.objects.select_related("reverses", "reversed_by")
        lead = generics.get_object_or_404(
            partner_leads(request).prefetch_related(Prefetch("events", events_with_reversals)),
            pk=lead_id,
        )
        unavailable = ""
        try:
            applicant = pull.applicant_for_partner(lead=lead, acting_key=acting_key(request))
        except DisclosureRefused as exc:
            # The lead stays the partner's to see; only the personal data is withheld.
            applicant, unavailable = None, exc.code
        lead.applicant = applicant  # type: ignore[attr-defined]
        lead.applicant_unavailable = unavailable  # type: ignore[attr-defined]
        return Response(PartnerLeadDetailOutput(lead).data)


class EventInput(serializers.Serializer):
    event_id = serializers.CharField(max_length=120, help_text="Your unique id for the event")
    type = serializers.ChoiceField(choices=EventType.choices)
    occurred_at = serializers.DateTimeField()
    # Out-of-range numbers are bad input (400 naming the field), like any other field error.
    amount = StrictDecimalField(
        max_digits=12,
        decimal_places=2,
        min_value=Decimal("0.01"),
        max_value=events.MAX_AMOUNT,
        required=False,
        allow_null=True,
        help_text="Approved amount; for type revenue, the revenue earned in the period "
        "(interest and fees actually collected), at most the funded principal. In `currency`",
    )
    apr = StrictDecimalField(
        max_digits=5,
        decimal_places=4,
        min_value=Decimal(0),
        max_value=events.MAX_APR,
        required=False,
        allow_null=True,
        help_text="Annual rate, 0.2150 = 21.5%",
    )
    principal = StrictDecimalField(
        max_digits=12,
        decimal_places=2,
        min_value=Decimal("0.01"),
        max_value=events.MAX_AMOUNT,
        required=False,
        allow_null=True,
        help_text="Funded principal, in `currency`",
    )
    currency = serializers.ChoiceField(
        choices=Currency.choices,
        required=False,
        allow_blank=True,
        allow_null=True,
        help_text="ISO 4217 code of `amount` / `principal` (CNY, HKD, USD or EUR). Default: "
        "the lead's loan currency (`loan.currency`). Only on events with an amount or a "
        "principal",
    )
    reason = serializers.CharField(max_length=80, required=False, allow_blank=True)
    reverses = serializers.CharField(
        max_length=120,
        required=False,
        allow_blank=True,
        help_text="For type reversal only: the event_id of your earlier event on this lead "
        "that this one takes back (e.g. a cancelled funding)",
    )
    period = serializers.RegexField(
        r"^\d{4}-(0[1-9]|1[0-2])$",
        required=False,
        allow_blank=True,
        help_text="For type revenue only: the month the revenue was earned, YYYY-MM "
        "(default: the month of occurred_at); one revenue event per lead and period",
    )
