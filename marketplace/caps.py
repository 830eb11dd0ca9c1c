"""Volume caps and monthly budgets, counted atomically at the moment a lead is awarded.

What is counted
---------------
- *Volume caps* (``Product.daily_cap`` / ``monthly_cap``): every lead awarded to the
  product takes 1 from the counter of its UTC day and of its UTC month, per mode (sandbox
  leads never use up live volume).
- *Monthly budgets* (``Partner.monthly_budget``, ``Product.monthly_budget``, in the budget
  currency ``settings.DEFAULT_CURRENCY``; live leads only, sandbox is never billed): every
  lead awarded reserves **the money it commits the partner to at that moment**, its CPL:
  the winning bid for an auction lead, the CPL of the fee card in force (``marketplace.
  fee_cards``, billing's schedule) for a direct or pull lead. Only a price in the budget
  currency counts (a card in another currency counts through its rate to the platform
  currency, rounded up: a reservation never undercounts); a lead with no price in force
  reserves 0. The reservation stands for that lead's CPL charge whenever it comes (even in
  a later month): billing counts a month's charges *beyond* the reservations (approval,
  funding, revenue share, corrections, and the CPL of a lead that reserved nothing) in the
  ``charged`` counter (``billing.budgets``).

The rule, for a budget ``B`` of a month: an award goes through only if
``reserved + charged + price <= B`` (and ``reserved + charged < B``: a spent budget takes
no lead even at price 0). Charges for approvals and funding arrive later and are billed
regardless, because the partner owes them: they can take ``reserved + charged`` past
``B``, after which no lead is awarded until the next month (or a higher budget). Billing's
budget hold (``HoldReason.BUDGET``) is placed on the same sum, so matching stops offering
the partner as well.

How it is counted
-----------------
One ``CapCounter`` row per (product or partner, kind, period, mode), changed only by a
compare-and-set in the award's transaction (:func:`reserve`)::

    UPDATE cap_counter SET used = used + x WHERE <key> AND used + x <= limit

(as one ``INSERT ... ON CONFLICT DO UPDATE ... WHERE``, which also creates the period's
row; one row written: taken; none: the cap is reached). PostgreSQL re-checks the condition on
the newest row version after waiting for a concurrent award's commit, so concurrent
awards take a counter one after the other and none is ever overshot; SQLite serialises
writers anyway. All of an award's counters are taken in a savepoint, all or nothing; a
refused award rolls it back (which also lets go of the rows it had updated) and tells the
caller which products were refused, so it can choose again without them.

A lead whose award does not go through (its post rejected, failed for good, or refused by
consent: the partner never took it) gives back exactly what it took, once
(:func:`release`, compare-and-set on its ``CapReservation``). A lead the partner took
keeps its count: a returned lead stays counted (its credit is billing's).

Matching's check stays a cheap read of the same counters without a lock
(:func:`at_cap`); only :func:`reserve` decides.

Locks (``marketplace.locks``): counter rows are taken after the applicant's subject, in
one global order: product counters (by product id; day, month, reserved), then partner
counters (by partner id). ``charged`` rows are written by billing alone and only read
here, so a charge and an award never wait on each other.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import ROUND_CEILING, Decimal
from typing import Any

from django.conf import settings
from django.db import connection, models, transaction
from django.db.models import F, Q
from django.db.models.functions import Round
from django.utils import timezone

from marketplace.models import (
    CapCounter,
    CapKind,
    CapReservation,
    CapScope,
    Lead,
    LeadStatus,
    ProductFeeCard,
)
from partners import catalogue_cache
from partners.models import Partner, Product
from partners.months import month_of

BUDGET_CURRENCY = settings.DEFAULT_CURRENCY  # budgets are amounts in the platform currency
CENT = Decimal("0.01")
ZERO = Decimal("0.00")
ONE = Decimal(1)
# Lead statuses in which the partner never took the lead: its award did not go through.
NOT_TAKEN = (LeadStatus.POST_REJECTED, LeadStatus.DELIVERY_FAILED, LeadStatus.BLOCKED)

# (scope, owner, kind, period): a counter of one mode.
Key = tuple[str, uuid.UUID, str, date]
_KIND_ORDER = {CapKind.DAY: 0, CapKind.MONTH: 1, CapKind.RESERVED: 2, CapKind.CHARGED: 3}
_SCOPE_ORDER = {CapScope.PRODUCT: 0, CapScope.PARTNER: 1}


def lock_order(key: Key) -> tuple[int, str, int, date]:
    """The one order counters are taken in: product counters before partner counters,
    each by id, then day, month, reserved."""
    scope, owner, kind, period = key
    return (_SCOPE_ORDER[CapScope(scope)], str(owner), _KIND_ORDER[CapKind(kind)], period)


@dataclass(frozen=True)
class Claim:
    """One lead about to be awarded: its product's volume caps, and its bid if it was won
    at an auction (its CPL then)."""

    lead_id: uuid.UUID
    product_id: uuid.UUID
    partner_id: uuid.UUID
    daily: int | None
    monthly: int | None
    bid: Decimal | None = None
    bid_currency: str = ""


@dataclass(frozen=True)
class Budgets:
    """The monthly budgets in force (only the products and partners that have one)."""

    products: dict[uuid.UUID, Decimal]
    partners: dict[uuid.UUID, Decimal]


def budgets_in_force(*, version: int | None = None) -> Budgets:
    """Every budget, from memory per catalogue version (a budget change moves it)."""

    def read() -> Budgets:
        return Budgets(
            products={
                product_id: budget
                for product_id, budget in Product.objects.filter(monthly_budget__isnull=False)
                .order_by()
                .values_list("id", "monthly_budget")
                if budget is not None
            },
            partners={
                partner_id: budget
                for partner_id, budget in Partner.objects.filter(monthly_budget__isnull=False)
                .order_by()
                .values_list("id", "monthly_budget")
                if budget is not None
            },
        )

    return catalogue_cache.cached("budgets", version=version, compute=read)


def _periods(now: datetime) -> tuple[date, date]:
    return now.date(), month_of(now)


def _volume_keys(claim: Claim, day: date, month: date) -> list[tuple[Key, int]]:
    keys: list[tuple[Key, int]] = []
    if claim.daily is not None:
        keys.append(((CapScope.PRODUCT, claim.product_id, CapKind.DAY, day), claim.daily))
    if claim.monthly is not None:
        keys.append(((CapScope.PRODUCT, claim.product_id, CapKind.MONTH, month), claim.monthly))
    return keys


def _budget_owners(
    product_id: uuid.UUID, partner_id: uuid.UUID, budgets: Budgets
) -> list[tuple[str, uuid.UUID, Decimal]]:
    owners = []
    if product_id in budgets.products:
        owners.append((CapScope.PRODUCT.value, product_id, budgets.products[product_id]))
    if partner_id in budgets.partners:
        owners.append((CapScope.PARTNER.value, partner_id, budgets.partners[partner_id]))
    return owners


def _used(keys: Iterable[Key], *, is_sandbox: bool) -> dict[Key, Decimal]:
    """The counters' values now (no lock): one query."""
    keys = list(keys)
    if not keys:
        return {}
    where = Q()
    for scope, owner, kind, period in keys:
        where |= Q(scope=scope, owner_id=owner, kind=kind, period=period)
    rows = (
        CapCounter.objects.filter(where, is_sandbox=is_sandbox)
        .order_by()
        .values_list("scope", "owner_id", "kind", "period", "used")
    )
    return {(scope, owner, kind, period): used for scope, owner, kind, period, used in rows}


def at_cap(
    products: Iterable[tuple[uuid.UUID, uuid.UUID, int | None, int | None]],
    *,
    is_sandbox: bool,
    version: int | None = None,
    now: datetime | None = None,
) -> set[uuid.UUID]:
    """Matching's cheap pre-filter: of ``(product, partner, daily cap, monthly cap)``, the
    products at a volume cap or whose (or whose partner's) budget is spent, read without a
    lock. No query when none is capped or budgeted. :func:`reserve` decides for real."""
    day, month = _periods(now or timezone.now())
    budgets = budgets_in_force(version=version) if not is_sandbox else Budgets({}, {})
    wanted: dict[uuid.UUID, list[tuple[list[Key], Decimal]]] = defaultdict(list)
    for product_id, partner_id, daily, monthly in products:
        claim = Claim(uuid.UUID(int=0), product_id, partner_id, daily, monthly)
        for key, cap in _volume_keys(claim, day, month):
            wanted[product_id].append(([key], Decimal(cap)))
        for scope, owner, budget in _budget_owners(product_id, partner_id, budgets):
            spent: list[Key] = [
                (scope, owner, kind, month) for kind in (CapKind.RESERVED, CapKind.CHARGED)
            ]
            wanted[product_id].append((spent, budget))
    if not wanted:
        return set()
    used = _used(
        {key for limits in wanted.values() for keys, _ in limits for key in keys},
        is_sandbox=is_sandbox,
    )
    return {
        product_id
        for product_id, limits in wanted.items()
        if any(sum((used.get(k, ZERO) for k in keys), ZERO) >= cap for keys, cap in limits)
    }


def _prices(claims: Sequence[Claim]) -> dict[uuid.UUID, Decimal]:
    """Each claim's CPL in the budget currency (lead id -> price)."""
    cards = {
        product_id: (currency, cpl, rate)
        for product_id, currency, cpl, rate in ProductFeeCard.objects.filter(
            product_id__in={c.product_id for c in claims}
        )
        .order_by()
        .values_list("product_id", "currency", "cpl", "to_platform")
    }
    prices = {}
    for claim in claims:
        card = cards.get(claim.product_id)
        if claim.bid is not None:
            amount, currency = claim.bid, claim.bid_currency
        elif card is not None:
            amount, currency = card[1], card[0]
        else:
            prices[claim.lead_id] = ZERO  # no fee in force: the lead commits nothing
            continue
        if currency == BUDGET_CURRENCY:
            prices[claim.lead_id] = amount
        elif card is not None and card[0] == currency and card[2] is not None:
            # Rounded up: a reservation never undercounts the charge it stands for.
            prices[claim.lead_id] = (amount * card[2]).quantize(CENT, rounding=ROUND_CEILING)
        else:
            prices[claim.lead_id] = ZERO  # charged in another currency: not a budget's
    return prices


_TABLE = CapCounter._meta.db_table
# Insert the counter with ``x`` taken, or take ``x`` from the one there, only while
# ``used + x <= limit`` (and, for a budget at price 0, ``used < limit``). PostgreSQL
# evaluates the condition on the newest version of the row, after a concurrent writer's
# commit; SQLite has one writer at a time. The row stays locked to the caller's commit.
# Amounts are cast to numbers and sums rounded to the cent: SQLite's driver passes
# decimals as text (which compares above any number) and adds them as floats.
_TAKE = (
    f"INSERT INTO {_TABLE} (scope, owner_id, kind, period, is_sandbox, used) "  # noqa: S608
    "VALUES (%s, %s, %s, %s, %s, CAST(%s AS NUMERIC)) "
    "ON CONFLICT (scope, owner_id, kind, period, is_sandbox) "
    f"DO UPDATE SET used = ROUND({_TABLE}.used + excluded.used, 2) "
    f"WHERE ROUND({_TABLE}.used + excluded.used, 2) <= CAST(%s AS NUMERIC) "
    f"AND ROUND({_TABLE}.used, 2) < CAST(%s AS NUMERIC)"
)


def _field(name: str) -> models.Field[Any, Any]:
    field = CapCounter._meta.get_field(name)
    assert isinstance(field, models.Field)
    return field


def _take(key: Key, add: Decimal, limit: Decimal, *, is_sandbox: bool) -> bool:
    """Compare-and-set one counter: True if ``add`` was taken (see ``_TAKE``)."""
    if add > limit or limit <= 0:
        return False  # not even an empty counter has room (counters never go below 0)
    scope, owner, kind, period = key
    values = [
        _field(name).get_db_prep_save(value, connection)
        for name, value in (
            ("scope", scope),
            ("owner_id", owner),
            ("kind", kind),
            ("period", period),
            ("is_sandbox", is_sandbox),
            ("used", add),
            ("used", limit),
            ("used", limit),
        )
    ]
    with connection.cursor() as cursor:
        cursor.execute(_TAKE, values)
        return cursor.rowcount == 1


def reserve(
    claims: Sequence[Claim],
    *,
    is_sandbox: bool,
    version: int | None = None,
    now: datetime | None = None,
) -> set[uuid.UUID]:
    """Take every claim's caps and budgets, all or nothing, in the caller's transaction
    (the counters stay locked to its commit). Returns the products refused (empty: all
    taken, and each lead's ``CapReservation`` written; the leads themselves must be
    inserted in the same transaction). No query when nothing is capped or budgeted."""
    now = now or timezone.now()
    day, month = _periods(now)
    budgets = budgets_in_force(version=version) if not is_sandbox else Budgets({}, {})
    volume = {claim.lead_id: _volume_keys(claim, day, month) for claim in claims}
    owners = {
        claim.lead_id: _budget_owners(claim.product_id, claim.partner_id, budgets)
        for claim in claims
    }
    concerned = [claim for claim in claims if volume[claim.lead_id] or owners[claim.lead_id]]
    if not concerned:
        return set()
    budgeted = [claim for claim in concerned if owners[claim.lead_id]]
    prices = _prices(budgeted) if budgeted else {}
    charged = _used(
        {
            (scope, owner, CapKind.CHARGED, month)
            for c in budgeted
            for scope, owner, _ in owners[c.lead_id]
        },
        is_sandbox=False,
    )

    # What each counter must take, its limit, and the products that need it.
    adds: dict[Key, Decimal] = defaultdict(Decimal)
    limits: dict[Key, Decimal] = {}
    needed_by: dict[Key, set[uuid.UUID]] = defaultdict(set)
    for claim in concerned:
        for key, cap in volume[claim.lead_id]:
            adds[key] += ONE
            limits[key] = Decimal(cap)
            needed_by[key].add(claim.product_id)
        for scope, owner, budget in owners[claim.lead_id]:
            key = (scope, owner, CapKind.RESERVED, month)
            adds[key] += prices[claim.lead_id]
            limits[key] = budget - charged.get((scope, owner, CapKind.CHARGED, month), ZERO)
            needed_by[key].add(claim.product_id)
    refused: set[uuid.UUID] = set()
    savepoint = transaction.savepoint()
    # One statement per counter, in the lock order: creating a counter and taking it are
    # one step, so a new day's first awards wait for each other in that order too.
    for key in sorted(adds, key=lock_order):
        if not _take(key, adds[key], limits[key], is_sandbox=is_sandbox):
            refused |= needed_by[key]
    if refused:
        transaction.savepoint_rollback(savepoint)
        return refused
    transaction.savepoint_commit(savepoint)
    reservations = []
    for claim in concerned:
        amounts = {scope: prices[claim.lead_id] for scope, _, _ in owners[claim.lead_id]}
        kinds = {key[2] for key, _ in volume[claim.lead_id]}
        reservations.append(
            CapReservation(
                lead_id=claim.lead_id,
                product_id=claim.product_id,
                partner_id=claim.partner_id,
                is_sandbox=is_sandbox,
                day=day if CapKind.DAY in kinds else None,
                month=month if CapKind.MONTH in kinds else None,
                budget_month=month if amounts else None,
                product_amount=amounts.get(CapScope.PRODUCT),
                partner_amount=amounts.get(CapScope.PARTNER),
                created_at=now,
            )
        )
    CapReservation.objects.bulk_create(reservations)
    return set()


def release(*, lead_id: uuid.UUID) -> bool:
    """Give back what the lead's award took (its post was rejected, failed for good, or
    refused by consent: the partner never took it). Once: True if this call released it.
    The caller has moved the lead to such a status; it holds the lead's row (its own,
    first in the lock order) or runs on its own."""
    with transaction.atomic():
        now = timezone.now()
        lost = CapReservation.objects.filter(
            lead_id=lead_id, released_at__isnull=True, lead__status__in=NOT_TAKEN
        )
        if not lost.update(released_at=now):
            return False
        reservation = CapReservation.objects.get(lead_id=lead_id)
        gives: dict[Key, Decimal] = {}
        if reservation.day is not None:
            gives[(CapScope.PRODUCT, reservation.product_id, CapKind.DAY, reservation.day)] = ONE
        if reservation.month is not None:
            month: Key = (
                CapScope.PRODUCT,
                reservation.product_id,
                CapKind.MONTH,
                reservation.month,
            )
            gives[month] = ONE
        if reservation.budget_month is not None:
            for scope, owner, amount in (
                (CapScope.PRODUCT, reservation.product_id, reservation.product_amount),
                (CapScope.PARTNER, reservation.partner_id, reservation.partner_amount),
            ):
                if amount is not None:
                    gives[(scope, owner, CapKind.RESERVED, reservation.budget_month)] = amount
        # Rounded to the cent as taking is: SQLite subtracts as floats, and 40.01 - 40.00
        # - 0.01 there is a hair below 0, which the counter's check refuses.
        for key in sorted(gives, key=lock_order):
            CapCounter.objects.filter(
                scope=key[0],
                owner_id=key[1],
                kind=key[2],
                period=key[3],
                is_sandbox=reservation.is_sandbox,
            ).order_by().update(used=Round(F("used") - gives[key], 2))
        return True


def take_again(*, lead: Lead) -> bool:
    """Before a lead whose award was given back is posted again (``marketplace.resend``):
    take its caps and budget again, now, as a new award would. True if taken (or nothing
    was given back); False: no room now, the caller refuses and rolls back. The caller
    holds the lead's row."""
    given_back = CapReservation.objects.filter(lead_id=lead.pk, released_at__isnull=False)
    if not given_back.exists():
        return True
    given_back.delete()  # a new reservation takes its place (restored if the caller rolls back)
    daily, monthly = (
        Product.objects.filter(pk=lead.product_id).values_list("daily_cap", "monthly_cap").get()
    )
    claim = Claim(
        lead.pk,
        lead.product_id,
        lead.partner_id,
        daily,
        monthly,
        bid=lead.bid_amount,
        bid_currency=lead.bid_currency,
    )
    return not reserve([claim], is_sandbox=lead.is_sandbox)
