"""The caller's products, read-only (changes go through a change request), each with its
active holds.
"""

from __future__ import annotations

import uuid
from typing import Any

from django.db.models import Prefetch, QuerySet
from drf_spectacular.utils import OpenApiExample, extend_schema
from rest_framework import generics, serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from partners import products
from partners.api.profile import HoldOutput
from partners.api.selectors import NOT_FOUND, TAGS, partner_products
from partners.authentication import IsPartnerKey
from partners.holds import active_holds
from partners.models import Product


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
