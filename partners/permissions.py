"""Partner staff and their object permissions (django-guardian, direct foreign keys).

A *partner staff* user (``is_staff``, member of the ``partner_staff`` group) works in the
Django admin on behalf of one or more partners: the group gives model-level *view*
permissions on the partner models, and object permissions on ``Partner`` rows (stored in
``PartnerUserObjectPermission`` / ``PartnerGroupObjectPermission``, plain foreign keys to
``Partner`` rather than guardian's generic table) say which partners:

- ``partners.view_partner`` on a partner: see it and every row that carries its id;
- ``partners.change_partner`` on a partner: also manage it (contacts, issue and revoke its
  API keys, replay its webhook messages, rotate its signing secrets).

Operator staff (staff users outside the group) and superusers are not restricted here:
Django's model permissions apply to them as usual.

For other apps: scope any admin or query that shows partner rows with the one selector,
``partners.scoping.visible_to(queryset, user, partner=...)`` (the admin mixin
``partners.adminutils.PartnerScopedAdminMixin`` does it for a ModelAdmin), then add your
models' view permissions
to ``PARTNER_STAFF_MODEL_PERMS`` (only once they are scoped: the group's model permission
alone would show partner staff every row).
"""

from __future__ import annotations

import uuid
from typing import Any

from django.contrib.auth.models import Group, Permission
from django.db import models, transaction
from guardian.shortcuts import assign_perm, get_objects_for_user, remove_perm

from partners.models import Partner

PARTNER_STAFF_GROUP = "partner_staff"
VIEW = "partners.view_partner"
MANAGE = "partners.change_partner"
# Model-level permissions of the group: only models whose admin is scoped by partner.
PARTNER_STAFF_MODEL_PERMS = [
    "partners.view_partner",
    "partners.view_product",
    "partners.view_productchangerequest",
    "partners.view_apikey",
    "partners.view_webhookendpoint",
    "partners.view_webhookmessage",
    "partners.view_webhookattempt",
    # Scoped by partner in their own apps' admins (PartnerScopedAdminMixin).
    "marketplace.view_lead",
    "marketplace.view_leadevent",
    "billing.view_invoice",
    "billing.view_charge",
    "billing.view_creditnote",
    "billing.view_payment",
    "consent.view_deletionrequest",
]

_CACHE_ATTR = "_partner_ids_cache"


def is_partner_staff(user: Any) -> bool:
    """Restricted to granted partners: in the partner staff group and not a superuser."""
    if not getattr(user, "is_authenticated", False) or getattr(user, "is_superuser", False):
        return False
    cached = getattr(user, _CACHE_ATTR, None)
    if cached is not None and "is_partner_staff" in cached:
        return bool(cached["is_partner_staff"])
    result = user.groups.filter(name=PARTNER_STAFF_GROUP).exists()
    _cache(user)["is_partner_staff"] = result
    return bool(result)


def _cache(user: Any) -> dict[str, Any]:
    cache = getattr(user, _CACHE_ATTR, None)
    if cache is None:
        cache = {}
        setattr(user, _CACHE_ATTR, cache)  # lives as long as the request's user object
    return cache


def partner_ids_for_user(user: Any, *, manage: bool = False) -> frozenset[uuid.UUID] | None:
    """The partners this user may see (or, with ``manage``, manage); ``None`` when the
    user is not partner staff and so not restricted by partner (operator staff,
    superusers: their model permissions apply as usual)."""
    if not is_partner_staff(user):
        return None
    cache = _cache(user)
    key = "manage" if manage else "view"
    if key not in cache:
        perms = [MANAGE] if manage else [VIEW, MANAGE]
        partners = get_objects_for_user(
            user,
            perms,
            klass=Partner,
            any_perm=True,
            with_superuser=False,
            accept_global_perms=False,
        )
        cache[key] = frozenset(partners.values_list("id", flat=True))
    return frozenset(cache[key])


def ensure_partner_staff_group() -> Group:
    group, _ = Group.objects.get_or_create(name=PARTNER_STAFF_GROUP)
    query = models.Q(pk__in=[])
    for perm in PARTNER_STAFF_MODEL_PERMS:
        app_label, codename = perm.split(".", 1)
        query |= models.Q(content_type__app_label=app_label, codename=codename)
    permissions = Permission.objects.filter(query)
    group.permissions.add(*permissions)
    return group


def grant_partner_access(*, user: Any, partner: Partner, manage: bool = False) -> None:
    """Make ``user`` partner staff for ``partner`` (view; with ``manage`` also change)."""
    with transaction.atomic():
        user.groups.add(ensure_partner_staff_group())
        if not user.is_staff:
            user.is_staff = True
            user.save(update_fields=["is_staff"])
        assign_perm(VIEW, user, partner)
        if manage:
            assign_perm(MANAGE, user, partner)
    if hasattr(user, _CACHE_ATTR):
        delattr(user, _CACHE_ATTR)


def revoke_partner_access(*, user: Any, partner: Partner) -> None:
    """Take ``partner`` away from ``user`` (view and manage). A user left with no partner
    also leaves the partner staff group, so no model permission of the group remains."""
    with transaction.atomic():
        remove_perm(VIEW, user, partner)
        remove_perm(MANAGE, user, partner)
        if hasattr(user, _CACHE_ATTR):
            delattr(user, _CACHE_ATTR)
        if not partner_ids_for_user(user):
            user.groups.remove(ensure_partner_staff_group())
    if hasattr(user, _CACHE_ATTR):
        delattr(user, _CACHE_ATTR)
