"""Source side of the API: a declined applicant referred (``POST /referrals``, the input
serializers intake validates) and the referral read back with its offers in the applicant's
order (``marketplace.offers``) and every partner that received the applicant's data.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Any

from django.conf import settings
from django.db.models import Prefetch, QuerySet
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiExample,
    OpenApiResponse,
    extend_schema,
    extend_schema_field,
)
from rest_framework import generics, serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from consent import grants
from consent.grants import ConsentError, ConsentEvidence
from consent.models import Disclosure, GrantScope
from consent.vault import ApplicantData
from marketplace import intake, offers, validation
from marketplace.matching import product_index
from marketplace.models import Lead, Referral, RoutingDecision
from partners.authentication import IsSourceKey, client
from partners.errors import ApiError
from partners.fields import StrictDecimalField, StrictIntegerField
from partners.idempotency import idempotent
from partners.key_mode import acting_key
from partners.models import RISK_TIERS, Partner
from partners.scoping import visible_to

# A loan is asked for in the platform currency: products' amount bounds are in it.
LOAN_CURRENCIES = [settings.DEFAULT_CURRENCY]


EMPLOYMENT_TYPES = ["employed", "self_employed", "civil_servant", "student", "retired", "other"]


class ApplicantInput(serializers.Serializer):
    full_name = serializers.CharField(max_length=100)
    phone = serializers.RegexField(r"^\+?[0-9][0-9 \-]{6,19}$", max_length=24)
    national_id = serializers.RegexField(r"^[0-9A-Za-z]{6,32}$")
    birth_date = serializers.DateField(
        help_text="The applicant's age today must be within the operator's MIN_APPLICANT_AGE "
        "and MAX_APPLICANT_AGE settings (18 and 100 by default)"
    )
    monthly_income = StrictDecimalField(max_digits=12, decimal_places=2, min_value=0)
    employer = serializers.CharField(max_length=200, allow_blank=True)
    address = serializers.CharField(max_length=300)

    def validate_birth_date(self, value: date) -> date:
        problem = validation.birth_date_problem(value, today=timezone.now().date())
        if problem:
            raise serializers.ValidationError(problem)
        return value


class LoanInput(serializers.Serializer):
    amount = StrictDecimalField(max_digits=12, decimal_places=2, min_value=1)
    currency = serializers.ChoiceField(choices=LOAN_CURRENCIES)
    term_months = StrictIntegerField(min_value=1, max_value=120)
    purpose = serializers.CharField(max_length=40)


class ConsentInput(serializers.Serializer):
    text_version = serializers.CharField(max_length=60)
    collected_at = serializers.DateTimeField(
        help_text="Within the operator's CONSENT_MAX_AGE_DAYS setting (30 days by default) "
        "and not in the future (5 minutes of clock skew allowed)"
    )
    expires_at = serializers.DateTimeField()
    channel = serializers.CharField(max_length=40)
    method = serializers.CharField(max_length=40)
    scope = serializers.ChoiceField(choices=GrantScope.choices)
    partner_ids = serializers.ListField(child=serializers.UUIDField(), required=False)
    purposes = serializers.ListField(
        child=serializers.CharField(max_length=60), min_length=1, default=["loan_referral"]
    )
    ip_address = serializers.IPAddressField(required=False, allow_null=True)
    user_agent = serializers.CharField(max_length=500, required=False, allow_blank=True)

    def validate_collected_at(self, value: datetime) -> datetime:
        problem = validation.collected_at_problem(value, now=timezone.now())
        if problem:
            raise serializers.ValidationError(problem)
        return value

    def validate_partner_ids(self, value: list[uuid.UUID]) -> list[uuid.UUID]:
        known = set(Partner.objects.filter(id__in=value).values_list("id", flat=True))
        unknown = [str(v) for v in value if v not in known]
        if unknown:
            raise serializers.ValidationError(f"Unknown partner ids: {', '.join(unknown)}.")
        return value


class ReferralInput(serializers.Serializer):
    applicant = ApplicantInput()
    loan = LoanInput()
    risk_tier = serializers.ChoiceField(choices=RISK_TIERS)
    decline_reason = serializers.CharField(max_length=80)
    channel = serializers.CharField(max_length=40)
    region = serializers.RegexField(r"^[A-Z]{2}-[A-Z0-9]{1,3}$", help_text="ISO 3166-2, CN-GD")
    employment_type = serializers.ChoiceField(choices=EMPLOYMENT_TYPES)
    consent = ConsentInput()
    source_reference = serializers.CharField(max_length=80, required=False, allow_blank=True)

    def to_request(self) -> intake.ReferralRequest:
        data = self.validated_data
        consent = data["consent"]
        return intake.ReferralRequest(
            applicant=ApplicantData(**data["applicant"]),
            consent=ConsentEvidence(
                text_version=consent["text_version"],
                collected_at=consent["collected_at"],
                expires_at=consent["expires_at"],
                channel=consent["channel"],
                method=consent["method"],
                scope=consent["scope"],
                purposes=tuple(consent["purposes"]),
                named_partner_ids=tuple(consent.get("partner_ids", ())),
                ip_address=consent.get("ip_address"),
                user_agent=consent.get("user_agent", ""),
            ),
            amount=data["loan"]["amount"],
            currency=data["loan"]["currency"],
            term_months=data["loan"]["term_months"],
            purpose=data["loan"]["purpose"],
            risk_tier=data["risk_tier"],
            decline_reason=data["decline_reason"],
            channel=data["channel"],
            region=data["region"],
            employment_type=data["employment_type"],
            source_reference=data.get("source_reference", ""),
        )


class ReferralLeadOutput(serializers.ModelSerializer):
    partner_name = serializers.SerializerMethodField()
    approval_likelihood = serializers.SerializerMethodField()

    class Meta:
        model = Lead
        fields = [
            "id",
            "partner_id",
            "partner_name",
            "status",
            "delivery_mode",
            "approval_likelihood",
        ]

    @extend_schema_field(OpenApiTypes.FLOAT)
    def get_approval_likelihood(self, lead: Lead) -> float | None:
        """P(accepted and approved) as routing estimated it: what orders the offers."""
        likelihoods: dict[str, float] = self.context.get("likelihoods", {})
        return likelihoods.get(str(lead.product_id))

    @extend_schema_field(OpenApiTypes.STR)
    def get_partner_name(self, lead: Lead) -> str:
        # Intake answers from memory: the names routing matched come in the context.
        names: dict[uuid.UUID, str] = self.context.get("partner_names", {})
        name = names.get(lead.partner_id)
        return name if name is not None else lead.partner.name


class DataRecipientOutput(serializers.Serializer):
    partner_id = serializers.UUIDField()
    partner_name = serializers.CharField()
    first_disclosed_at = serializers.DateTimeField()


class ReferralOutput(serializers.ModelSerializer):
    # The offers in the applicant's order: likeliest approval first, then cheapest (never
    # by fee: marketplace.offers).
    leads = serializers.SerializerMethodField()
    # Every partner that received the applicant's personal data under this referral's
    # consent (the disclosure log): the applicant must be told who got it.
    data_recipients = serializers.SerializerMethodField()
    consent_receipt = serializers.SerializerMethodField()

    class Meta:
        model = Referral
        fields = [
            "id",
            "status",
            "status_reason",
            "source_reference",
            "is_sandbox",
            "amount",
            "currency",
            "term_months",
            "risk_tier",
            "region",
            "created_at",
            "leads",
            "data_recipients",
            "consent_receipt",
        ]

    @extend_schema_field(ReferralLeadOutput(many=True))
    def get_leads(self, referral: Referral) -> list[dict[str, Any]]:
        try:
            decision: RoutingDecision | None = referral.decision
        except RoutingDecision.DoesNotExist:
            decision = None  # routed before decisions were recorded, or never routed
        likelihoods = offers.approval_likelihoods(decision)
        ordered = offers.applicant_order(list(referral.leads.all()), likelihoods)
        context = {**self.context, "likelihoods": likelihoods}
        return list(ReferralLeadOutput(ordered, many=True, context=context).data)

    @extend_schema_field(DataRecipientOutput(many=True))
    def get_data_recipients(self, referral: Referral) -> list[dict[str, Any]]:
        if "data_recipients" in self.context:
            return list(self.context["data_recipients"])
        if referral.grant is None:
            return []
        first: dict[uuid.UUID, dict[str, Any]] = {}
        for disclosure in sorted(referral.grant.disclosures.all(), key=lambda d: d.disclosed_at):
            first.setdefault(
                disclosure.partner_id,
                {
                    "partner_id": disclosure.partner_id,
                    "partner_name": disclosure.partner.name,
                    "first_disclosed_at": disclosure.disclosed_at,
                },
            )
        return list(DataRecipientOutput(list(first.values()), many=True).data)

    def get_consent_receipt(self, referral: Referral) -> dict[str, Any] | None:
        if referral.grant is None:
            return None
        # Intake's answer: the grant is its own, not yet committed (grants.receipt).
        recipients = self.context.get("new_grant_recipients")
        return grants.receipt(referral.grant, new_grant_recipients=recipients)


REFERRAL_EXAMPLE = {
    "applicant": {
        "full_name": "王小明",
        "phone": "+86 138 0013 8000",
        "national_id": "110101199003071234",
        "birth_date": "1990-03-07",
        "monthly_income": "8500.00",
        "employer": "Shenzhen Example Tech Co.",
        "address": "广东省深圳市南山区科技园 1 号",
    },
    "loan": {"amount": "8000.00", "currency": "CNY", "term_months": 12, "purpose": "consumption"},
    "risk_tier": "R5",
    "decline_reason": "outside_risk_appetite",
    "channel": "app",
    "region": "CN-GD",
    "employment_type": "employed",
    "consent": {
        "text_version": "cn-referral-2026-01",
        "collected_at": "2026-11-22T08:00:00Z",
        "expires_at": "2027-11-22T08:00:00Z",
        "channel": "app",
        "method": "checkbox",
        "scope": "matched_partners",
        "purposes": ["loan_referral"],
        "ip_address": "203.0.113.9",
        "user_agent": "OperatorApp/5.2 (Android 14)",
    },
    "source_reference": "APP-2026-000123",
}


def _referral_queryset() -> QuerySet[Referral]:
    # Leads in consumer order (cheapest APR first, as routing ranked them): the source shows
    # the offers to the applicant in this order.
    leads = Lead.objects.select_related("partner").order_by(
        "product__apr_min", "product__apr_max", "product_id"
    )
    disclosures = Disclosure.objects.select_related("partner").only(
        "grant_id", "partner_id", "partner__name", "disclosed_at"
    )
    return Referral.objects.select_related(
        "grant__text", "grant__source", "decision"
    ).prefetch_related(
        Prefetch("leads", queryset=leads),
        "grant__recipients",
        Prefetch("grant__disclosures", queryset=disclosures),
    )


def source_referrals(request: Request) -> QuerySet[Referral]:
    """The calling source's referrals sent with keys of the calling key's mode."""
    return visible_to(_referral_queryset(), request, source="source_id", sandbox="is_sandbox")


def intake_response(stored: intake.Intake) -> dict[str, Any]:
    """The 201 body from what intake holds in memory: nothing is read back."""
    referral = stored.referral
    # The leads intake just made are all the referral has: the serializer's
    # ``referral.leads.all()`` reads them from this cache instead of the database.
    referral._prefetched_objects_cache = {"leads": stored.leads}  # type: ignore[attr-defined]
    names = {box.partner_id: box.partner_name for box in product_index.boxes_of(stored.leads)}
    # Nothing is disclosed before the intake commits (posts run after it): no recipients
    # yet. The decision routing made is in memory (``referral.decision``), and so are the
    # new grant's recipients (its receipt reads nothing).
    context = {
        "partner_names": names,
        "data_recipients": [],
        "new_grant_recipients": stored.grant_recipients,
    }
    return ReferralOutput(referral, context=context).data


class ReferralCreateView(APIView):
    permission_classes = [IsSourceKey]

    @extend_schema(
        operation_id="referrals_create",
        summary="Refer a declined applicant",
        request=ReferralInput,
        responses={201: ReferralOutput, 400: OpenApiResponse(description="Invalid fields")},
        examples=[
            OpenApiExample("Declined app applicant", value=REFERRAL_EXAMPLE, request_only=True)
        ],
        tags=["referrals"],
    )
    @idempotent
    def post(self, request: Request) -> Response:
        serializer = ReferralInput(data=request.data)
        serializer.is_valid(raise_exception=True)
        api_client = client(request)
        source = api_client.api_key.source
        assert source is not None
        try:
            stored = intake.create_referral(
                source=source,
                request=serializer.to_request(),
                is_sandbox=api_client.is_sandbox,
                acting_key=acting_key(request),
            )
        except validation.IntakeRefused as exc:
            # The serializer checks the same rules; this is only reached if time moved on.
            raise ApiError(
                "The request has invalid fields.",
                code="validation_error",
                details={exc.field: [str(exc)]},
            ) from None
        except ConsentError as exc:
            raise ApiError(
                str(exc), code="invalid_consent", details={exc.field: [str(exc)]}
            ) from None
        except intake.DuplicateReferral:
            raise ApiError(
                "A referral with this source_reference already exists.",
                code="duplicate_source_reference",
                status_code=status.HTTP_409_CONFLICT,
                details={"source_reference": ["Already used."]},
            ) from None
        return Response(intake_response(stored), status=status.HTTP_201_CREATED)


class ReferralDetailView(generics.RetrieveAPIView):
    permission_classes = [IsSourceKey]
    serializer_class = ReferralOutput

    def get_queryset(self) -> QuerySet[Referral]:
        return source_referrals(self.request)

    @extend_schema(tags=["referrals"], summary="A referral and its leads")
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().get(request, *args, **kwargs)
