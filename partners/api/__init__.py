"""Partner API of the partners app: the caller's profile, its products (read; changes are
proposed and wait for the operator's approval) and its webhook messages (with the attempt
log, and replay). Every query starts from a ``partner_*`` selector scoped by the caller's
partner and key mode (``partners.scoping``), so another partner's object, or one of the
other mode, is a 404 like one that does not exist.

``selectors`` (the scoped queries and what every view's schema shares), ``profile``,
``products``, ``change_requests``, ``webhook_messages``: one module per resource.
"""

from __future__ import annotations

from partners.api.change_requests import (
    CHANGE_REQUEST_EXAMPLE,
    MAX_AMOUNT,
    REGION,
    TAG,
    ChangeRequestDetailView,
    ChangeRequestFilter,
    ChangeRequestListView,
    ChangeRequestOutput,
    ProductChangeInput,
    ProductChangeRequestCreateView,
)
from partners.api.products import (
    PRODUCT_EXAMPLE,
    ProductDetailView,
    ProductListView,
    ProductOutput,
    with_holds,
)
from partners.api.profile import HoldOutput, PartnerMeView, PartnerProfileOutput
from partners.api.selectors import (
    NOT_FOUND,
    TAGS,
    partner_change_requests,
    partner_products,
    partner_webhook_messages,
)
from partners.api.webhook_messages import (
    MESSAGE_EXAMPLE,
    WebhookAttemptOutput,
    WebhookMessageDetailOutput,
    WebhookMessageDetailView,
    WebhookMessageFilter,
    WebhookMessageListView,
    WebhookMessageOutput,
    WebhookMessageReplayView,
)

__all__ = [
    "CHANGE_REQUEST_EXAMPLE",
    "MAX_AMOUNT",
    "MESSAGE_EXAMPLE",
    "NOT_FOUND",
    "PRODUCT_EXAMPLE",
    "REGION",
    "TAG",
    "TAGS",
    "ChangeRequestDetailView",
    "ChangeRequestFilter",
    "ChangeRequestListView",
    "ChangeRequestOutput",
    "HoldOutput",
    "PartnerMeView",
    "PartnerProfileOutput",
    "ProductChangeInput",
    "ProductChangeRequestCreateView",
    "ProductDetailView",
    "ProductListView",
    "ProductOutput",
    "WebhookAttemptOutput",
    "WebhookMessageDetailOutput",
    "WebhookMessageDetailView",
    "WebhookMessageFilter",
    "WebhookMessageListView",
    "WebhookMessageOutput",
    "WebhookMessageReplayView",
    "partner_change_requests",
    "partner_products",
    "partner_webhook_messages",
    "with_holds",
]
