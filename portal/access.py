"""Who may use the portal, for which partner, in which mode.

Partner staff (``partners.permissions``) reach the partners granted to them, exactly as in
the admin: the portal asks ``partner_ids_for_user`` (view) and, for every change,
``partner_ids_for_user(manage=True)``; every query then starts from ``portal.selectors``,
which scope through ``partners.scoping.visible_to`` and narrow to the one partner picked.

- Anonymous: redirected to the portal's login page.
- Signed in but not partner staff (operator staff, superusers): 403. The portal is the
  partners' view; operators have the admin.
- Partner staff of several partners pick one (kept in the session); of one, it is picked.
- The mode (live or sandbox, kept in the session) splits traffic as the API's key modes do:
  sandbox shows sandbox leads, returns, webhook messages and deletion requests only; billing
  is live only (sandbox traffic is never charged).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from functools import wraps
from typing import Any

from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseBase
from django.shortcuts import redirect
from django.urls import reverse

from partners.models import Partner
from partners.permissions import is_partner_staff, partner_ids_for_user

PARTNER_KEY = "portal_partner"
MODE_KEY = "portal_mode"
LIVE = "live"
SANDBOX = "sandbox"


@dataclass(frozen=True)
class Portal:
    """The request's portal context: the partner picked, its mode, what the user may do."""

    user: Any
    partner: Partner
    sandbox: bool
    can_manage: bool
    partner_count: int

    @property
    def mode(self) -> str:
        return SANDBOX if self.sandbox else LIVE


View = Callable[..., HttpResponseBase]


def login_url() -> str:
    return reverse("portal:login")


def granted_partner_ids(user: Any) -> frozenset[uuid.UUID]:
    ids = partner_ids_for_user(user)
    return ids if ids is not None else frozenset()


def require_partner_staff(request: HttpRequest) -> HttpResponse | None:
    """None when the user may use the portal; otherwise the answer (login or 403)."""
    if not request.user.is_authenticated:
        return redirect_to_login(request.get_full_path(), login_url())
    if not is_partner_staff(request.user) or not granted_partner_ids(request.user):
        raise PermissionDenied("The partner portal is for partner staff.")
    return None


def portal_view(*, manage: bool = False) -> Callable[[View], View]:
    """Wrap a portal view: partner staff only, a partner picked, ``request.portal`` set.
    ``manage``: the view changes something, so the user must manage the partner (403)."""

    def decorator(view: View) -> View:
        @wraps(view)
        def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
            refused = require_partner_staff(request)
            if refused is not None:
                return refused
            ids = granted_partner_ids(request.user)
            picked = _picked(request, ids)
            if picked is None:
                return redirect(f"{reverse('portal:pick_partner')}")
            managed = partner_ids_for_user(request.user, manage=True) or frozenset()
            context = Portal(
                user=request.user,
                partner=Partner.objects.get(pk=picked),
                sandbox=request.session.get(MODE_KEY) == SANDBOX,
                can_manage=picked in managed,
                partner_count=len(ids),
            )
            if manage and not context.can_manage:
                raise PermissionDenied("You may view this partner's portal, not change it.")
            request.portal = context  # type: ignore[attr-defined]
            return view(request, *args, **kwargs)

        return wrapped

    return decorator


def _picked(request: HttpRequest, ids: frozenset[uuid.UUID]) -> uuid.UUID | None:
    raw = request.session.get(PARTNER_KEY)
    try:
        chosen = uuid.UUID(str(raw)) if raw else None
    except ValueError:
        chosen = None
    if chosen in ids:
        return chosen
    if len(ids) == 1:
        (only,) = ids
        request.session[PARTNER_KEY] = str(only)
        return only
    return None


def pick_partner(request: HttpRequest, partner_id: uuid.UUID) -> bool:
    """Remember the partner picked, if the user is its staff."""
    if partner_id not in granted_partner_ids(request.user):
        return False
    request.session[PARTNER_KEY] = str(partner_id)
    return True


def portal_of(request: HttpRequest) -> Portal:
    return request.portal  # type: ignore[attr-defined]
