"""Monthly budget caps: routing to a partner (or one product) pauses once this UTC
month's charges, net of credits and reversals, reach its ``monthly_budget``.

Budgets are in CNY and count the CNY ledger entries billed in the current month
(``Charge.period``, the partner's ``charge_billing_period`` index: one index-only
aggregate). Evaluated after every charge (billing.receivers, in the charge's
transaction), when a partner's or product's budget is edited, and hourly by beat
(:func:`sweep_budgets`), which lifts last month's holds once a new month starts and
catches anything the other paths missed.

Only the hold set here ("monthly budget reached") is ever released here, and a partner
already held for another reason (ops, the credit limit) is left as it is. Concurrent
charges of one partner may overshoot a budget by the charges in flight (a soft cap); the
next charge holds.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable
from datetime import UTC, date
from decimal import Decimal
from functools import partial

from django.db.models import Q, QuerySet, Sum
from django.utils import timezone

from billing import credit
from billing.models import Charge, Currency
from partners.holds import hold_product, hold_routing, release_product, release_routing
from partners.models import Partner, Product

HOLD_REASON = "monthly budget reached"
BUDGET_CURRENCY = Currency.CNY


def current_month() -> date:
    """The first day of the current UTC month (a ``Charge.period`` value)."""
    return timezone.now().astimezone(UTC).date().replace(day=1)


def _month_charges(partner_id: uuid.UUID) -> QuerySet[Charge]:
    return Charge.objects.filter(
        partner_id=partner_id, currency=BUDGET_CURRENCY, period=current_month()
    )


def month_to_date(
    *, partner_id: uuid.UUID, product_ids: Iterable[uuid.UUID] = ()
) -> tuple[Decimal, dict[uuid.UUID, Decimal]]:
    """This month's net spend of the partner, and of each of ``product_ids``, in one
    aggregate."""
    ids = list(dict.fromkeys(product_ids))
    sums = {f"p{i}": Sum("amount", filter=Q(product_id=pid)) for i, pid in enumerate(ids)}
    row = _month_charges(partner_id).aggregate(total=Sum("amount"), **sums)
    zero = Decimal("0.00")
    return row["total"] or zero, {pid: row[f"p{i}"] or zero for i, pid in enumerate(ids)}


def _apply(reached: bool, hold: str, *, on: Callable[[], bool], off: Callable[[], bool]) -> None:
    """Hold when the budget is reached, release our own hold when it is not. A row held
    for another reason (ops, the credit limit) is left alone: it gets no leads anyway, and
    its reason must survive."""
    if reached and not hold:
        on()
    elif not reached and hold == HOLD_REASON:
        off()


def evaluate_budgets(*, partner_id: uuid.UUID, product_ids: Iterable[uuid.UUID] = ()) -> None:
    """Hold or release the partner and these products of it for their monthly budgets.
    One primary-key read (partner and products joined), and the aggregate only when a
    budget (or a budget hold) is concerned."""
    ids = list(product_ids)
    rows = list(
        Product.objects.filter(id__in=ids, partner_id=partner_id).values_list(
            "partner__monthly_budget",
            "partner__routing_hold",
            "id",
            "monthly_budget",
            "routing_hold",
        )
    )
    if rows:
        budget, hold = rows[0][0], rows[0][1]
    else:
        partner = (
            Partner.objects.filter(pk=partner_id)
            .values_list("monthly_budget", "routing_hold")
            .first()
        )
        if partner is None:
            return
        budget, hold = partner
    products = [
        (product_id, product_budget, product_hold)
        for _, _, product_id, product_budget, product_hold in rows
        if product_budget is not None or product_hold == HOLD_REASON
    ]
    if budget is None and hold != HOLD_REASON and not products:
        return  # no budget concerned: no aggregate
    total, per_product = month_to_date(partner_id=partner_id, product_ids=[p[0] for p in products])
    released = False
    if budget is not None or hold == HOLD_REASON:
        reached = budget is not None and total >= budget
        if not reached and hold == HOLD_REASON:
            released = True
        _apply(
            reached,
            hold,
            on=partial(hold_routing, partner_id=partner_id, reason=HOLD_REASON),
            off=partial(release_routing, partner_id=partner_id, reason=HOLD_REASON),
        )
    for product_id, product_budget, product_hold in products:
        _apply(
            product_budget is not None and per_product[product_id] >= product_budget,
            product_hold,
            on=partial(hold_product, product_id=product_id, reason=HOLD_REASON),
            off=partial(release_product, product_id=product_id, reason=HOLD_REASON),
        )
    if released:
        # Lifting our hold must not lift the credit limit's (it may have been waiting).
        credit.evaluate_credit_limit(partner_id=partner_id)


def sweep_budgets() -> int:
    """Re-evaluate every partner and product with a budget or held for one (beat, hourly:
    a new month lifts the holds of the last). Returns the partners evaluated."""
    partner_ids = set(
        Partner.objects.filter(
            Q(monthly_budget__isnull=False) | Q(routing_hold=HOLD_REASON)
        ).values_list("id", flat=True)
    )
    by_partner: dict[uuid.UUID, list[uuid.UUID]] = {}
    for product_id, partner_id in Product.objects.filter(
        Q(monthly_budget__isnull=False) | Q(routing_hold=HOLD_REASON)
    ).values_list("id", "partner_id"):
        by_partner.setdefault(partner_id, []).append(product_id)
    for partner_id in partner_ids | set(by_partner):
        evaluate_budgets(partner_id=partner_id, product_ids=by_partner.get(partner_id, ()))
    return len(partner_ids | set(by_partner))
