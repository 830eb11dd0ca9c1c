"""Product change requests: a partner proposes new terms for a product (validated here,
applied only once the operator approves) and reads its requests back.
"""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

from django.db.models import QuerySet
from django_filters import rest_framework as filters
from drf_spectacular.utils import OpenApiExample, OpenApiResponse, extend_schema
from rest_framework import generics, serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from partners import products
from partners.api.products import PRODUCT_EXAMPLE
from partners.api.selectors import NOT_FOUND, TAGS, partner_change_requests, partner_products
from partners.authentication import IsPartnerKey, client
from partners.errors import ApiError
from partners.fields import StrictDecimalField, StrictIntegerField
from partners.idempotency import idempotent
from partners.key_mode import require_live_key
from partners.models import (
    EMPLOYMENT_TYPES,
    RISK_TIERS,
    ChangeRequestStatus,
    DeliveryMode,
    ProductChangeRequest,
)

MAX_AMOUNT = Decimal("10000000.00")  # 10 million CNY: anything above is a typo


REGION = r"^[A-Z]{2}-[A-Z0-9]{1,3}$"


TAG = r"^[a-z0-9_]{1,40}$"


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
