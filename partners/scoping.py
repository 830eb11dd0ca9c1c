"""What a viewer may see of a partner's (or a source's) rows: one selector, ``visible_to``.

Two kinds of viewer reach partner rows, and both go through ``visible_to``:

- an **API caller** (a request authenticated by an API key, or its ``ApiClient``) reaches
  its own tenant's objects, in its own key mode (below);
- a **staff user** in the admin: partner staff (``partners.permissions``) see only the rows
  of the partners granted to them (with ``manage``, of the partners they manage); operator
  staff and superusers are not narrowed here, their model permissions apply as usual.

**API callers.** Every object a key can reach through the API belongs to one *tenant* (a
partner, or a traffic source) and, if it is traffic, to one *mode*: sandbox or live. A key
reaches an object only if both match: another tenant's object, or one of the other mode,
does not exist for it (404, never 403, so ids cannot be probed). Each app writes one
selector per object kind on top of ``visible_to`` (``partners.api.partner_products``,
``marketplace.api.partner_leads``, ``consent.api.source_grants``, ...), and every view
starts its query from its selector.

Modes of the object kinds:

- traffic (referrals, consent grants, leads and their events, webhook messages about them,
  withdrawals and deletion requests, ledger entries about them): the object's own sandbox
  flag, set once from the key that created the referral (``is_sandbox``);
- configuration (a partner's products and change requests): the same in both modes;
  readable with either key, changeable only with a live key
  (``partners.key_mode.require_live_key``);
- billing (invoices, the statement): live only; sandbox traffic is never charged, so a
  sandbox key has no invoices (an empty list, a 404 for an id) and no statement.

This module imports nothing of the API's error plumbing, so the admin can load it while
apps load; the refusals that go with key modes live in ``partners.key_mode``.
"""

from __future__ import annotations

from enum import Enum
from typing import Any, TypeVar

from django.db.models import Model, QuerySet
from rest_framework.request import Request

from partners.authentication import ApiClient, client
from partners.models import KeyKind
from partners.permissions import partner_ids_for_user

M = TypeVar("M", bound=Model)


class Mode(Enum):
    """How an object kind is split by key mode when it has no sandbox flag of its own."""

    CONFIGURATION = "configuration"  # one object for both modes
    LIVE_ONLY = "live_only"  # exists for live traffic only


def caller(request_or_client: Request | ApiClient) -> ApiClient:
    if isinstance(request_or_client, ApiClient):
        return request_or_client
    return client(request_or_client)


def visible_to(
    queryset: QuerySet[M],
    viewer: Request | ApiClient | Any,
    *,
    partner: str | None = None,
    source: str | None = None,
    sandbox: str | Mode | None = None,
    manage: bool = False,
) -> QuerySet[M]:
    """The rows of ``queryset`` that ``viewer`` may see.

    ``partner`` (or ``source``) is the lookup of the owning partner's (source's) id, e.g.
    ``"partner_id"``, ``"lead__partner"``, ``"pk"`` on ``Partner`` or
    ``"withdrawal__grant__source_id"``: give exactly one.

    ``viewer`` is an API caller (a DRF request or its ``ApiClient``) or a staff user:

    - an API caller reaches its own tenant's rows in its own mode: a key of the other kind
      reaches nothing; ``sandbox`` (required) is the lookup of the row's sandbox flag, or a
      ``Mode`` for kinds without one;
    - a staff user: partner staff reach the rows of their partners (``manage``: of the
      partners they manage), and nothing scoped by source; other staff reach every row.
      Staff see both modes, so ``sandbox`` does not apply.
    """
    if (partner is None) == (source is None):
        raise ValueError("scope by exactly one of partner= or source=")
    if isinstance(viewer, Request | ApiClient):
        if sandbox is None:
            raise ValueError("an API caller's rows are scoped by mode: give sandbox=")
        return _visible_to_api_client(
            queryset, caller(viewer), partner=partner, source=source, sandbox=sandbox
        )
    ids = partner_ids_for_user(viewer, manage=manage)
    if ids is None:
        return queryset  # operator staff and superusers: model permissions apply
    if partner is None:
        return queryset.none()  # partner staff own no source's rows
    return queryset.filter(**{f"{partner}__in": ids})


def _visible_to_api_client(
    queryset: QuerySet[M],
    api_client: ApiClient,
    *,
    partner: str | None,
    source: str | None,
    sandbox: str | Mode,
) -> QuerySet[M]:
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
