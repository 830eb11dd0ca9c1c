"""Routing holds: who stopped routing to a partner or one of its products, and why.

A hold is a ``RoutingHold`` row with one reason (``HoldReason``): ops' pause (the admin),
the credit limit (``billing.credit``) or the monthly budget (``billing.budgets``). Each
owner places and lifts only its own reason, so a budget that resets cannot lift the credit
limit's hold, nor ops' resume the budget's. A partner-wide hold (``product_id`` None) stops
every product of the partner; a product hold stops that product only.

Both writes are idempotent and bump the partner's (or product's) ``updated_at``: every
process's product index (``marketplace.matching``) keys its cache on those timestamps and
notices the change on its next read. Matching and auctions read holds through
:func:`without_holds`.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import Exists, OuterRef, Q, QuerySet
from django.utils import timezone

from partners.models import HoldReason, Partner, Product, RoutingHold


@dataclass(frozen=True)
class ActiveHold:
    reason: str
    since: datetime


def active_holds() -> QuerySet[RoutingHold]:
    """Every hold in force (lifted ones are history)."""
    return RoutingHold.objects.filter(lifted_at__isnull=True)


def _own(partner_id: uuid.UUID, product_id: uuid.UUID | None, reason: str) -> QuerySet[RoutingHold]:
    holds = active_holds().filter(partner_id=partner_id, reason=reason)
    return holds.filter(product_id=product_id) if product_id else holds.filter(product__isnull=True)


def _touch(partner_id: uuid.UUID, product_id: uuid.UUID | None, now: datetime) -> None:
    # The product index's version is built from these timestamps (marketplace.matching).
    if product_id:
        Product.objects.filter(pk=product_id).update(updated_at=now)
    else:
        Partner.objects.filter(pk=partner_id).update(updated_at=now)


def place_hold(
    *,
    partner_id: uuid.UUID,
    product_id: uuid.UUID | None = None,
    reason: str,
    note: str = "",
    created_by: Any = None,
) -> bool:
    """Hold routing to the partner (or one product of it) for ``reason``; True if placed,
    False if a hold for that reason was already in force."""
    reason = HoldReason(reason)
    if product_id and not Product.objects.filter(pk=product_id, partner_id=partner_id).exists():
        raise Product.DoesNotExist(f"product {product_id} is not the partner's")
    if _own(partner_id, product_id, reason).exists():
        return False
    now = timezone.now()
    try:
        # A savepoint: a concurrent placement of the same hold loses on the partial unique
        # constraint without breaking the caller's transaction.
        with transaction.atomic():
            RoutingHold.objects.create(
                partner_id=partner_id,
                product_id=product_id,
                reason=reason,
                note=note[:200],
                created_at=now,
                created_by=created_by,
            )
    except IntegrityError:
        return False
    _touch(partner_id, product_id, now)
    return True


def lift_hold(
    *,
    partner_id: uuid.UUID,
    product_id: uuid.UUID | None = None,
    reason: str,
    lifted_by: Any = None,
) -> bool:
    """Lift the hold for ``reason`` only (holds of other reasons stay); True if one was in
    force."""
    now = timezone.now()
    lifted = _own(partner_id, product_id, HoldReason(reason)).update(
        lifted_at=now, lifted_by=lifted_by
    )
    if lifted:
        _touch(partner_id, product_id, now)
    return bool(lifted)


# --- Selectors ---------------------------------------------------------------------------------


def is_held(
    *, partner_id: uuid.UUID, product_id: uuid.UUID | None = None, reason: str | None = None
) -> bool:
    """Whether a hold (of ``reason``, or of any) is in force on the partner itself, or with
    ``product_id`` on that product itself."""
    holds = active_holds().filter(partner_id=partner_id)
    holds = (
        holds.filter(product_id=product_id) if product_id else holds.filter(product__isnull=True)
    )
    return (holds.filter(reason=reason) if reason else holds).exists()


def held_partner_ids(*, reason: str | None = None) -> QuerySet[RoutingHold, uuid.UUID]:
    """Partners held partner-wide (for ``reason``, or for any), as a subquery-ready list."""
    holds = active_holds().filter(product__isnull=True)
    return (holds.filter(reason=reason) if reason else holds).values_list("partner_id", flat=True)


def held_product_ids(*, reason: str | None = None) -> QuerySet[RoutingHold, uuid.UUID]:
    """Products held by a hold of their own (for ``reason``, or for any)."""
    holds = active_holds().filter(product__isnull=False)
    return (holds.filter(reason=reason) if reason else holds).values_list("product_id", flat=True)


def without_holds(products: QuerySet[Product]) -> QuerySet[Product]:
    """``products`` less those held, partner-wide or by a hold of their own."""
    return products.exclude(
        Exists(
            active_holds().filter(
                Q(product__isnull=True, partner_id=OuterRef("partner_id"))
                | Q(product_id=OuterRef("pk"))
            )
        )
    )


def holds_of(*, partner_id: uuid.UUID, product_id: uuid.UUID | None = None) -> list[ActiveHold]:
    """The holds in force on the partner itself (or on one product), oldest first."""
    holds = active_holds().filter(partner_id=partner_id)
    holds = (
        holds.filter(product_id=product_id) if product_id else holds.filter(product__isnull=True)
    )
    return [
        ActiveHold(reason, since) for reason, since in holds.values_list("reason", "created_at")
    ]
