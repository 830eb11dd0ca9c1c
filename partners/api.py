"""Partner API of the partners app: the caller's profile, its products (read; changes are
proposed and wait for the operator's approval) and its webhook messages (with the attempt
log, and replay). Every query starts from a ``partner_*`` selector scoped by the caller's
partner and key mode (``partners.scoping``), so another partner's object, or one of the
other mode, is a 404 like one that does not exist."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

from django.db.models import Prefetch, QuerySet
from django_filters import rest_framework as filters
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

from partners import products, webhook_delivery
from partners.authentication import IsPartnerKey, client
from partners.errors import ApiError
from partners.fields import StrictDecimalField, StrictIntegerField
from partners.holds import active_holds
from partners.idempotency import idempotent
from partners.key_mode import require_live_key
from partners.models import (
    EMPLOYMENT_TYPES,
    RISK_TIERS,
    ChangeRequestStatus,
    DeliveryMode,
    MessageStatus,
    Partner,
    Product,
    ProductChangeRequest,
    RoutingHold,
    WebhookAttempt,
    WebhookMessage,
)
from partners.query_params import UtcDateTimeFilter
from partners.scoping import Mode, visible_to
from partners.throttling import rate_limit_per_minute

TAGS = ["partner"]
NOT_FOUND = OpenApiResponse(description="Not yours, or no such object (the one error shape)")
MAX_AMOUNT = Decimal("10000000.00")  # 10 million CNY: anything above is a typo
REGION = r"^[A-Z]{2}-[A-Z0-9]{1,3}$"
TAG = r"^[a-z0-9_]{1,40}$"


# --- Selectors: every partner-facing query starts here ----------------------------------------


def _partner_id(request: Request) -> uuid.UUID:
    partner_id = client(request).partner_id
    assert partner_id is not None  # IsPartnerKey
    return partner_id


def partner_products(request: Request) -> QuerySet[Product]:
    """The caller's products: configuration, the same for its sandbox and live keys."""
    return visible_to(
        Product.objects.all(), request, partner="partner_id", sandbox=Mode.CONFIGURATION
    )


def partner_change_requests(request: Request) -> QuerySet[ProductChangeRequest]:
    """The caller's change requests: configuration, like the products they change."""
    return visible_to(
        ProductChangeRequest.objects.all(),
        request,
        partner="partner_id",
        sandbox=Mode.CONFIGURATION,
    )


def partner_webhook_messages(request: Request) -> QuerySet[WebhookMessage]:
    """The caller's messages about traffic of the calling key's mode."""
    return visible_to(
        WebhookMessage.objects.select_related("endpoint"),
        request,
        partner="partner_id",
        sandbox="is_sandbox",
    )


# --- Profile ---------------------------------------------------------------------------------


class HoldOutput(serializers.ModelSerializer):
    """A routing hold in force: why (``ops_pause``, ``credit_limit``, ``budget``) and since
    when. Ops' own note stays internal."""

    since = serializers.DateTimeField(source="created_at")

    class Meta:
        model = RoutingHold
        fields = ["reason", "since"]


class PartnerProfileOutput(serializers.ModelSerializer):
    key = serializers.SerializerMethodField()
    holds = serializers.SerializerMethodField()

    class Meta:
        model = Partner
        fields = [
            "id",
            "name",
            "legal_name",
            "licence_number",
            "status",
            "holds",
            "monthly_budget",
            "contact_name",
            "contact_email",
            "key",
        ]

    @extend_schema(
        responses={
            200: {
                "type": "object",
                "properties": {
                    "prefix": {"type": "string"},
                    "mode": {"type": "string", "enum": ["live", "sandbox"]},
                    "name": {"type": "string"},
                    "rate_limit_per_minute": {"type": "integer", "nullable": True},
                    "created_at": {"type": "string", "format": "date-time"},
                },
            }
        }
    )
    @extend_schema_field(HoldOutput(many=True))
    def get_holds(self, partner: Partner) -> list[dict[str, Any]]:
        held = active_holds().filter(partner_id=partner.pk, product__isnull=True)
        return list(HoldOutput(held, many=True).data)

    def get_key(self, partner: Partner) -> dict[str, Any]:
        api_key = self.context["api_key"]
        return {
            "prefix": api_key.prefix,
            "mode": api_key.mode,
            "name": api_key.name,
            "rate_limit_per_minute": rate_limit_per_minute(api_key),
            "created_at": api_key.created_at,
        }


class PartnerMeView(APIView):
    permission_classes = [IsPartnerKey]

    @extend_schema(
        tags=TAGS,
        summary="Your partner profile, status and the calling key's mode",
        description="`status` is onboarding, sandbox, live, paused or offboarded; "
        "`holds` lists why leads are held although you are live (empty when not), one "
        "entry per reason with the time it was placed: `ops_pause` (the operator paused "
        "you), `credit_limit` (what you owe exceeds your credit limit; lifted once it no "
        "longer does), `budget` (this month's charges net of credits reached "
        "`monthly_budget`, CNY, null: no cap; lifted at the start of the next UTC month or "
        "by a higher budget). Each is lifted on its own: leads resume when none is left. "
        "`key.mode` is the mode of the key you called with: a sandbox key sees and "
        "changes sandbox traffic only, a live key live traffic only; both read your "
        "products, only a live key changes them or reads invoices and the statement. "
        "`key.rate_limit_per_minute` is the key's rate limit (null: none); "
        "over it every call answers 429 with a `Retry-After` header (seconds).",
        responses={200: PartnerProfileOutput},
        examples=[
            OpenApiExample(
                "Live partner, sandbox key",
                response_only=True,
                value={
                    "id": "5a7c9a56-2f7c-4d1e-9a57-0c7f6c1b2f10",
                    "name": "Hengfeng Consumer Finance",
                    "legal_name": "Hengfeng Consumer Finance Co., Ltd.",
                    "licence_number": "CF-2019-0042",
                    "status": "live",
                    "holds": [{"reason": "budget", "since": "2026-11-20T14:03:11Z"}],
                    "monthly_budget": "200000.00",
                    "contact_name": "Integration desk",
                    "contact_email": "api@example.com",
                    "key": {
                        "prefix": "3f9a1c2b7d4e",
                        "mode": "sandbox",
                        "name": "staging",
                        "rate_limit_per_minute": 600,
                        "created_at": "2026-11-01T09:00:00Z",
                    },
                },
            )
        ],
    )
    def get(self, request: Request) -> Response:
        api_key = client(request).api_key
        partner = Partner.objects.get(pk=_partner_id(request))
        return Response(PartnerProfileOutput(partner, context={"api_key": api_key}).data)


# --- Products --------------------------------------------------------------------------------


class ProductOutput(serializers.ModelSerializer):
    holds = HoldOutput(
        source="holds_in_force",
        many=True,
        read_only=True,
        help_text="Holds of this product alone (e.g. its monthly budget reached); "
        "the partner's own holds are in `GET /api/v1/partner/me`.",
    )

    class Meta:
        model = Product
        fields = [
            "id",
            "name",
            "is_active",
            *[name for name in products.CHANGEABLE_FIELDS if name not in {"name", "is_active"}],
            "max_shared_partners",
            "monthly_budget",
            "holds",
            "created_at",
            "updated_at",
        ]


PRODUCT_EXAMPLE = {
    "id": "9b2e4c1a-77d0-4d55-8a3e-2b6f1f0c9e21",
    "name": "Consumer loan",
    "is_active": True,
    "min_amount": "1000.00",
    "max_amount": "50000.00",
    "min_term_months": 3,
    "max_term_months": 24,
    "risk_tiers": ["R3", "R4", "R5", "R6"],
    "regions": [],
    "excluded_regions": ["CN-XZ"],
    "min_age": 20,
    "max_age": 55,
    "min_monthly_income": "2000.00",
    "employment_types": ["employed", "self_employed"],
    "purposes": [],
    "channels": [],
    "apr_min": "0.1500",
    "apr_max": "0.2200",
    "delivery_mode": "direct_post",
    "post_url": "https://lender.example.com/leads",
    "ping_url": "",
    "ping_timeout_ms": 500,
    "post_timeout_ms": 10000,
    "daily_cap": 500,
    "monthly_cap": 12000,
    "dedupe_days": 30,
    "exclusive": False,
    "max_shared_partners": 3,
    "monthly_budget": "200000.00",
    "holds": [],
    "created_at": "2026-10-01T08:00:00Z",
    "updated_at": "2026-11-02T08:00:00Z",
}


def with_holds(products: QuerySet[Product]) -> QuerySet[Product]:
    """Each product with its own holds in force (``holds_in_force``), in one more query."""
    return products.prefetch_related(
        Prefetch("routing_holds", queryset=active_holds(), to_attr="holds_in_force")
    )


class ProductListView(generics.ListAPIView):
    permission_classes = [IsPartnerKey]
    serializer_class = ProductOutput

    def get_queryset(self) -> QuerySet[Product]:
        if getattr(self, "swagger_fake_view", False):
            return Product.objects.none()
        return with_holds(partner_products(self.request))

    @extend_schema(
        tags=TAGS,
        summary="Your products (credit boxes)",
        examples=[OpenApiExample("A product", value=PRODUCT_EXAMPLE, response_only=True)],
    )
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().get(request, *args, **kwargs)


class ProductDetailView(APIView):
    permission_classes = [IsPartnerKey]

    @extend_schema(
        tags=TAGS,
        summary="One of your products: the full credit box, delivery settings and caps",
        responses={200: ProductOutput, 404: NOT_FOUND},
        examples=[OpenApiExample("A product", value=PRODUCT_EXAMPLE, response_only=True)],
    )
    def get(self, request: Request, product_id: uuid.UUID) -> Response:
        product = generics.get_object_or_404(with_holds(partner_products(request)), pk=product_id)
        return Response(ProductOutput(product).data)


# --- Change requests -------------------------------------------------------------------------


def _amount(**kwargs: Any) -> StrictDecimalField:
    return StrictDecimalField(
        max_digits=13, decimal_places=2, max_value=MAX_AMOUNT, required=False, **kwargs
    )


def _apr(help_text: str) -> StrictDecimalField:
    return StrictDecimalField(
        max_digits=5,
        decimal_places=4,
        min_value=Decimal(0),
        max_value=Decimal(1),
        required=False,
        help_text=f"{help_text}, as a fraction: 0.2400 = 24%",
    )


class ProductChangeInput(serializers.Serializer):
    """The fields to change, each bounded as the model allows; cross-field rules (ranges,
    APR cap, delivery URLs) are checked on the product as it would become."""

    name = serializers.CharField(max_length=120, required=False)
    is_active = serializers.BooleanField(required=False)
    min_amount = _amount(min_value=Decimal("0.01"))
    max_amount = _amount(min_value=Decimal("0.01"))
    min_term_months = StrictIntegerField(min_value=1, max_value=120, required=False)
    max_term_months = StrictIntegerField(min_value=1, max_value=120, required=False)
    risk_tiers = serializers.ListField(
        child=serializers.ChoiceField(choices=RISK_TIERS), min_length=1, required=False
    )
    regions = serializers.ListField(
        child=serializers.RegexField(REGION), max_length=100, required=False
    )
    excluded_regions = serializers.ListField(
        child=serializers.RegexField(REGION), max_length=100, required=False
    )
    min_age = StrictIntegerField(min_value=18, max_value=100, required=False)
    max_age = StrictIntegerField(min_value=18, max_value=100, required=False)
    min_monthly_income = _amount(min_value=Decimal(0))
    employment_types = serializers.ListField(
        child=serializers.ChoiceField(choices=EMPLOYMENT_TYPES), required=False
    )
    purposes = serializers.ListField(
        child=serializers.RegexField(TAG), max_length=50, required=False
    )
    channels = serializers.ListField(
        child=serializers.RegexField(TAG), max_length=50, required=False
    )
    apr_min = _apr("Lowest APR offered")
    apr_max = _apr("Highest APR offered")
    delivery_mode = serializers.ChoiceField(choices=DeliveryMode.choices, required=False)
    post_url = serializers.URLField(max_length=500, allow_blank=True, required=False)
    ping_url = serializers.URLField(max_length=500, allow_blank=True, required=False)
    ping_timeout_ms = StrictIntegerField(min_value=50, max_value=5_000, required=False)
    post_timeout_ms = StrictIntegerField(min_value=500, max_value=30_000, required=False)
    daily_cap = StrictIntegerField(min_value=1, allow_null=True, required=False)
    monthly_cap = StrictIntegerField(min_value=1, allow_null=True, required=False)
    dedupe_days = StrictIntegerField(min_value=0, max_value=365, required=False)
    exclusive = serializers.BooleanField(required=False)
    note = serializers.CharField(
        max_length=500, required=False, allow_blank=True, help_text="Why (for the reviewer)"
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(self.initial_data) - set(self.fields))
        if unknown:
            raise serializers.ValidationError(
                {name: ["Unknown or unchangeable field."] for name in unknown}
            )
        for name in ("risk_tiers", "regions", "excluded_regions", "employment_types"):
            values = attrs.get(name)
            if values is not None and len(set(values)) != len(values):
                raise serializers.ValidationError({name: ["Values must not repeat."]})
        return attrs


class ChangeRequestOutput(serializers.ModelSerializer):
    class Meta:
        model = ProductChangeRequest
        fields = [
            "id",
            "product_id",
            "status",
            "changes",
            "note",
            "decision_note",
            "decided_at",
            "created_at",
        ]


CHANGE_REQUEST_EXAMPLE = {
    "id": "0f8e2d8c-3c1b-4f5e-9d2a-6a1b7c3d9e44",
    "product_id": PRODUCT_EXAMPLE["id"],
    "status": "pending",
    "changes": {"max_amount": "80000.00", "risk_tiers": ["R3", "R4", "R5", "R6", "R7"]},
    "note": "Wider box for Q1",
    "decision_note": "",
    "decided_at": None,
    "created_at": "2026-11-22T08:00:00Z",
}


class ProductChangeRequestCreateView(APIView):
    permission_classes = [IsPartnerKey]

    @extend_schema(
        tags=TAGS,
        summary="Propose a change to one of your products (applied after our review)",
        description="Partners never change products directly. Send only the fields to "
        "change; each is checked as the product would become (amount, term, age and APR "
        "ranges, APR cap, risk tiers R1..R8, delivery URLs that must be public https). "
        "The request waits for the operator's approval; follow it on "
        "`GET /api/v1/partner/change-requests`. Products are configuration: both your "
        "keys read them, only a live key proposes changes (a sandbox key gets 403 "
        "`live_key_required`). Accepts `Idempotency-Key`.",
        request=ProductChangeInput,
        responses={
            201: ChangeRequestOutput,
            400: OpenApiResponse(description="Invalid fields, each named in `details`"),
            403: OpenApiResponse(description="`live_key_required`: called with a sandbox key"),
            404: NOT_FOUND,
        },
        examples=[
            OpenApiExample(
                "Wider box",
                request_only=True,
                value={
                    "max_amount": "80000.00",
                    "risk_tiers": ["R3", "R4", "R5", "R6", "R7"],
                    "note": "Wider box for Q1",
                },
            ),
            OpenApiExample("Pending", response_only=True, value=CHANGE_REQUEST_EXAMPLE),
        ],
    )
    @idempotent
    def post(self, request: Request, product_id: uuid.UUID) -> Response:
        # The key's mode first (it does not depend on the id, so it tells nothing about
        # it), then ownership: another partner's product is a 404 whatever the body says.
        require_live_key(request, "Changing a product")
        product = generics.get_object_or_404(partner_products(request), pk=product_id)
        serializer = ProductChangeInput(data=request.data)
        serializer.is_valid(raise_exception=True)
        changes = dict(serializer.validated_data)
        note = changes.pop("note", "")
        try:
            change_request = products.propose_change(
                product=product, changes=changes, note=note, api_key=client(request).api_key
            )
        except products.ChangeRequestError as exc:
            raise ApiError(
                "The request has invalid fields.", code="validation_error", details=exc.errors
            ) from None
        return Response(ChangeRequestOutput(change_request).data, status=status.HTTP_201_CREATED)


class ChangeRequestFilter(filters.FilterSet):
    status = filters.ChoiceFilter(choices=ChangeRequestStatus.choices)
    product_id = filters.UUIDFilter(field_name="product_id")

    class Meta:
        model = ProductChangeRequest
        fields = ["status", "product_id"]


class ChangeRequestListView(generics.ListAPIView):
    permission_classes = [IsPartnerKey]
    serializer_class = ChangeRequestOutput
    filterset_class = ChangeRequestFilter

    def get_queryset(self) -> QuerySet[ProductChangeRequest]:
        if getattr(self, "swagger_fake_view", False):
            return ProductChangeRequest.objects.none()
        return partner_change_requests(self.request)

    @extend_schema(
        tags=TAGS,
        summary="Your product change requests and their status",
        examples=[OpenApiExample("Pending", value=CHANGE_REQUEST_EXAMPLE, response_only=True)],
    )
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().get(request, *args, **kwargs)


class ChangeRequestDetailView(APIView):
    permission_classes = [IsPartnerKey]

    @extend_schema(
        tags=TAGS,
        summary="One of your product change requests",
        responses={200: ChangeRequestOutput, 404: NOT_FOUND},
        examples=[OpenApiExample("Pending", value=CHANGE_REQUEST_EXAMPLE, response_only=True)],
    )
    def get(self, request: Request, change_request_id: uuid.UUID) -> Response:
        change_request = generics.get_object_or_404(
            partner_change_requests(request), pk=change_request_id
        )
        return Response(ChangeRequestOutput(change_request).data)


# --- Webhook messages ------------------------------------------------------------------------


class WebhookAttemptOutput(serializers.ModelSerializer):
    class Meta:
        model = WebhookAttempt
        fields = ["attempted_at", "http_status", "latency_ms", "error"]


class WebhookMessageOutput(serializers.ModelSerializer):
    endpoint_url = serializers.CharField(source="endpoint.url")

    class Meta:
        model = WebhookMessage
        fields = [
            "id",
            "event_type",
            "status",
            "is_sandbox",
            "attempts",
            "next_attempt_at",
            "delivered_at",
            "created_at",
            "endpoint_url",
            "payload",
        ]


class WebhookMessageDetailOutput(WebhookMessageOutput):
    attempt_log = WebhookAttemptOutput(many=True, help_text="Newest first")

    class Meta(WebhookMessageOutput.Meta):
        fields = [*WebhookMessageOutput.Meta.fields, "attempt_log"]


MESSAGE_EXAMPLE = {
    "id": "msg_6f1c0e1f8a7b4c3d9e2f1a0b9c8d7e6f",
    "event_type": "consent.withdrawn",
    "status": "pending",
    "is_sandbox": False,
    "attempts": 2,
    "next_attempt_at": "2026-11-22T08:35:05Z",
    "delivered_at": None,
    "created_at": "2026-11-22T08:00:00Z",
    "endpoint_url": "https://lender.example.com/webhooks",
    "payload": {
        "type": "consent.withdrawn",
        "timestamp": "2026-11-22T08:00:00+00:00",
        "data": {"lead_ids": ["2c1f..."]},
    },
}


class WebhookMessageFilter(filters.FilterSet):
    status = filters.ChoiceFilter(choices=MessageStatus.choices)
    event_type = filters.CharFilter()
    created_after = UtcDateTimeFilter(field_name="created_at", lookup_expr="gte")

    class Meta:
        model = WebhookMessage
        fields = ["status", "event_type"]


class WebhookMessageListView(generics.ListAPIView):
    permission_classes = [IsPartnerKey]
    serializer_class = WebhookMessageOutput
    filterset_class = WebhookMessageFilter

    def get_queryset(self) -> QuerySet[WebhookMessage]:
        if getattr(self, "swagger_fake_view", False):
            return WebhookMessage.objects.none()
        return partner_webhook_messages(self.request)

    @extend_schema(
        tags=TAGS,
        summary="Webhook messages we sent (or are sending) you",
        description="Filter by `status` (pending, delivered, failed) and `event_type`. "
        "Verify what you receive with the official `standardwebhooks` library.",
        examples=[OpenApiExample("Retrying", value=MESSAGE_EXAMPLE, response_only=True)],
    )
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().get(request, *args, **kwargs)


class WebhookMessageDetailView(APIView):
    permission_classes = [IsPartnerKey]

    @extend_schema(
        tags=TAGS,
        summary="One webhook message with every delivery attempt",
        responses={200: WebhookMessageDetailOutput, 404: NOT_FOUND},
        examples=[
            OpenApiExample(
                "Retrying",
                response_only=True,
                value={
                    **MESSAGE_EXAMPLE,
                    "attempt_log": [
                        {
                            "attempted_at": "2026-11-22T08:05:05Z",
                            "http_status": 503,
                            "latency_ms": 41,
                            "error": "http 503",
                        },
                        {
                            "attempted_at": "2026-11-22T08:00:00Z",
                            "http_status": None,
                            "latency_ms": 10000,
                            "error": "timed out",
                        },
                    ],
                },
            )
        ],
    )
    def get(self, request: Request, message_id: str) -> Response:
        message = generics.get_object_or_404(
            partner_webhook_messages(request).prefetch_related("attempt_log"), pk=message_id
        )
        return Response(WebhookMessageDetailOutput(message).data)


class WebhookMessageReplayView(APIView):
    permission_classes = [IsPartnerKey]

    @extend_schema(
        tags=TAGS,
        summary="Send one of your webhook messages again from the start",
        description="The message keeps its id (`webhook-id`), so a receiver that already "
        "processed it can drop the duplicate. Its retry schedule starts over.",
        request=None,
        responses={
            202: WebhookMessageOutput,
            404: NOT_FOUND,
            409: OpenApiResponse(description="The endpoint is disabled; re-enable it first"),
        },
        examples=[
            OpenApiExample(
                "Queued again",
                response_only=True,
                status_codes=["202"],
                value={**MESSAGE_EXAMPLE, "attempts": 0, "next_attempt_at": None},
            )
        ],
    )
    def post(self, request: Request, message_id: str) -> Response:
        message = generics.get_object_or_404(partner_webhook_messages(request), pk=message_id)
        if not message.endpoint.is_active:
            raise ApiError(
                "The webhook endpoint is disabled; ask us to re-enable it, then replay.",
                code="endpoint_disabled",
                status_code=status.HTTP_409_CONFLICT,
            )
        webhook_delivery.replay(message_id=message.id)
        message.refresh_from_db()
        return Response(WebhookMessageOutput(message).data, status=status.HTTP_202_ACCEPTED)
