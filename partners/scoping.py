"""What an API key reaches: its own tenant's objects, in its own mode. One rule, one place.

Every object a key can reach through the API belongs to one *tenant* (a partner, or a
traffic source) and, if it is traffic, to one *mode*: sandbox or live. A key reaches an
object only if both match: another tenant's object, or one of the other mode, does not
exist for it (404, never 403, so ids cannot be probed). Each app writes one selector per
object kind on top of ``scoped`` (``partners.api.partner_products``,
``marketplace.api.partner_leads``, ``consent.api.source_grants``, ...), and every view
starts its query from its selector.

Modes of the object kinds:

- traffic (referrals, consent grants, leads and their events, webhook messages about them,
  withdrawals and deletion requests, ledger entries about them): the object's own sandbox
  flag, set once from the key that created the referral (``is_sandbox``);
- configuration (a partner's products and change requests): the same in both modes;
  readable with either key, changeable only with a live key (``require_live_key``);
- billing (invoices, the statement): live only; sandbox traffic is never charged, so a
  sandbox key has no invoices (an empty list, a 404 for an id) and no statement.
"""

from __future__ import annotations

from enum import Enum
from typing import Any, TypeVar

from django.db.models import Model, QuerySet
from rest_framework import status
from rest_framework.request import Request

from partners.authentication import ApiClient, client
from partners.errors import ApiError
from partners.models import KeyKind

M = TypeVar("M", bound=Model)


class Mode(Enum):
    """How an object kind is split by key mode when it has no sandbox flag of its own."""

    CONFIGURATION = "configuration"  # one object for both modes
    LIVE_ONLY = "live_only"  # exists for live traffic only


def caller(request_or_client: Request | ApiClient) -> ApiClient:
    if isinstance(request_or_client, ApiClient):
        return request_or_client
    return client(request_or_client)


def scoped(
    queryset: QuerySet[M],
    request_or_client: Request | ApiClient,
    *,
    partner: str | None = None,
    source: str | None = None,
    sandbox: str | Mode,
) -> QuerySet[M]:
    """``queryset`` narrowed to the caller's tenant and mode.

    ``partner`` (or ``source``) is the lookup of the owning partner's (source's) id, e.g.
    ``"partner_id"`` or ``"withdrawal__grant__source_id"``: give exactly one; a key of the
    other kind reaches nothing. ``sandbox`` is the lookup of the object's sandbox flag, or
    a ``Mode`` for kinds without one.
    """
    if (partner is None) == (source is None):
        raise ValueError("scope by exactly one of partner= or source=")
    api_client = caller(request_or_client)
    kind = api_client.api_key.kind
    if partner is not None:
        lookup = partner
        owner_id = api_client.partner_id if kind == KeyKind.PARTNER else None
    else:
        assert source is not None
        lookup = source
        owner_id = api_client.source_id if kind == KeyKind.SOURCE else None
    if owner_id is None:
        return queryset.none()  # a key of the other kind owns nothing here
    filters: dict[str, Any] = {lookup: owner_id}
    if sandbox is Mode.LIVE_ONLY:
        if api_client.is_sandbox:
            return queryset.none()
    elif sandbox is not Mode.CONFIGURATION:
        filters[sandbox] = api_client.is_sandbox
    return queryset.filter(**filters)


def require_live_key(request_or_client: Request | ApiClient, action: str) -> None:
    """Refuse (403 ``live_key_required``) a change that only a live key may make."""
    if caller(request_or_client).is_sandbox:
        raise ApiError(
            f"{action} needs a live key: sandbox keys read configuration but do not change it.",
            code="live_key_required",
            status_code=status.HTTP_403_FORBIDDEN,
        )


def require_live_billing(request_or_client: Request | ApiClient) -> None:
    """Refuse (404 ``no_sandbox_billing``) a billing document asked for with a sandbox key."""
    if caller(request_or_client).is_sandbox:
        raise ApiError(
            "Sandbox traffic is never charged: there are no sandbox invoices or statement. "
            "Use a live key.",
            code="no_sandbox_billing",
            status_code=status.HTTP_404_NOT_FOUND,
        )


def acting_key(request_or_client: Request | ApiClient) -> dict[str, str]:
    """Which key acted, for ledger entries written through the API: the key's public lookup
    prefix (as ``GET /partner/me`` shows it) and its mode. Never the secret, never a name."""
    api_key = caller(request_or_client).api_key
    return {"prefix": api_key.prefix, "mode": str(api_key.mode)}
