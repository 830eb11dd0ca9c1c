"""The partners app's admin: partners, their products, traffic sources and API keys
(``accounts``), routing holds an operator places and lifts (``holds``), webhook endpoints
and messages (``webhooks``) and product change requests (``change_requests``).

Partner staff (partners.permissions) see only their partners' rows in every admin here;
they edit contacts and act (keys, replays, rotations) only for partners they manage, and
never change products (they propose changes through the API) nor decide change requests.
"""

from __future__ import annotations

from partners.admin.accounts import (
    PARTNER_FIELDS,
    ApiKeyAdmin,
    ApiKeyInline,
    PartnerAdmin,
    ProductAdmin,
    ProductInline,
    TrafficSourceAdmin,
    WebhookInline,
)
from partners.admin.change_requests import ProductChangeRequestAdmin
from partners.admin.holds import OpsHoldForm, RoutingHoldAdminMixin
from partners.admin.webhooks import WebhookAttemptInline, WebhookEndpointAdmin, WebhookMessageAdmin

__all__ = [
    "PARTNER_FIELDS",
    "ApiKeyAdmin",
    "ApiKeyInline",
    "OpsHoldForm",
    "PartnerAdmin",
    "ProductAdmin",
    "ProductChangeRequestAdmin",
    "ProductInline",
    "RoutingHoldAdminMixin",
    "TrafficSourceAdmin",
    "WebhookAttemptInline",
    "WebhookEndpointAdmin",
    "WebhookInline",
    "WebhookMessageAdmin",
]
