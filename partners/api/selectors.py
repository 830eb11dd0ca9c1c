"""Every partner-facing query of the partner API starts here: a selector per object kind,
scoped to the caller's partner and key mode; and the schema bits every view shares.
"""

from __future__ import annotations

import uuid

from django.db.models import QuerySet
from drf_spectacular.utils import OpenApiResponse
from rest_framework.request import Request

from partners.authentication import client
from partners.models import Product, ProductChangeRequest, WebhookMessage
from partners.scoping import Mode, visible_to

TAGS = ["partner"]


NOT_FOUND = OpenApiResponse(description="Not yours, or no such object (the one error shape)")


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
