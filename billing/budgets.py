"""Monthly budget caps: routing to a partner (or one product) pauses once this UTC
month's charges, net of credits and reversals, reach its ``monthly_budget``.

Budgets are in the platform currency (``DEFAULT_CURRENCY``, CNY) and count the ledger
entries in it billed in the current month (``Charge.period``, the partner's
``charge_billing_period`` index: one index-only aggregate). Evaluated after every charge
(in the charge's transaction), when ops save a partner's or product's budget in the admin
(``billing.partner_admin``: billing's own admin for those models calls
:func:`evaluate_budgets` after the save), and hourly by beat (:func:`sweep_budgets`),
which lifts last month's holds once a new month starts and catches anything the other
paths missed.

A budget places and lifts only its own hold (``HoldReason.BUDGET``, partner-wide or on one
product); a hold of ops or of the credit limit stands beside it, untouched. Concurrent
charges of one partner may overshoot a budget by the charges in flight (a soft cap); the
next charge holds.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import date
from decimal import Decimal

from django.conf import settings
from django.db.models import Exists, OuterRef, Q, QuerySet, Sum
from django.utils import timezone

from billing import credit
from billing.models import Charge
from partners.holds import active_holds, held_partner_ids, held_product_ids, lift_hold, place_hold
from partners.models import HoldReason, Partner, Product
from partners.months import month_of

HOLD_REASON = HoldReason.BUDGET
BUDGET_CURRENCY = settings.DEFAULT_CURRENCY  # budgets are amounts in the platform currency


def current_month() -> date:
    """The first day of the current UTC month (a ``Charge.period`` value)."""
    return month_of(timezone.now())


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


def _budget_hold(partner: str, product: str | None = None) -> Exists:
    """Whether the partner (``partner`` names its id, from the outer query) or, with
    ``product``, the product is held for its budget right now."""
    holds = active_holds().filter(reason=HOLD_REASON, partner_id=OuterRef(partner))
    if product is None:
        return Exists(holds.filter(product__isnull=True))
    return Exists(holds.filter(product_id=OuterRef(product)))


def evaluate_budgets(*, partner_id: uuid.UUID, product_ids: Iterable[uuid.UUID] = ()) -> None:
    """Place or lift the budget holds of the partner and these products of it. One
    primary-key read (partner and products joined, with their budget holds), and the
    aggregate only when a budget (or a budget hold) is concerned."""
    ids = list(product_ids)
    rows = list(
        Product.objects.filter(id__in=ids, partner_id=partner_id)
        .annotate(
            partner_held=_budget_hold("partner_id"),
            held=_budget_hold("partner_id", "pk"),
        )
        .values_list("partner__monthly_budget", "partner_held", "id", "monthly_budget", "held")
    )
    if rows:
        budget, held = rows[0][0], rows[0][1]
    else:
        partner = (
            Partner.objects.filter(pk=partner_id)
            .annotate(held=_budget_hold("pk"))
            .values_list("monthly_budget", "held")
            .first()
        )
        if partner is None:
            return
        budget, held = partner
    products = [
        (product_id, product_budget, product_held)
        for _, _, product_id, product_budget, product_held in rows
        if product_budget is not None or product_held
    ]
    if budget is None and not held and not products:
        return  # no budget concerned: no aggregate
    total, per_product = month_to_date(partner_id=partner_id, product_ids=[p[0] for p in products])
    if budget is not None or held:
        reached = budget is not None and total >= budget
        if reached and not held:
            place_hold(partner_id=partner_id, reason=HOLD_REASON)
        elif not reached and held:
            lift_hold(partner_id=partner_id, reason=HOLD_REASON)
            # Before routing resumes, the credit limit is checked again: it may have been
            # set or lowered meanwhile without a charge to evaluate it (admin).
            credit.evaluate_credit_limit(partner_id=partner_id)
    for product_id, product_budget, product_held in products:
        reached = product_budget is not None and per_product[product_id] >= product_budget
        if reached and not product_held:
            place_hold(partner_id=partner_id, product_id=product_id, reason=HOLD_REASON)
        elif not reached and product_held:
            lift_hold(partner_id=partner_id, product_id=product_id, reason=HOLD_REASON)


def sweep_budgets() -> int:
    """Re-evaluate every partner and product with a budget or held for one (beat, hourly:
    a new month lifts the holds of the last). Returns the partners evaluated."""
    partner_ids = set(
        Partner.objects.filter(
            Q(monthly_budget__isnull=False) | Q(pk__in=held_partner_ids(reason=HOLD_REASON))
        ).values_list("id", flat=True)
    )
    by_partner: dict[uuid.UUID, list[uuid.UUID]] = {}
    for product_id, partner_id in Product.objects.filter(
        Q(monthly_budget__isnull=False) | Q(pk__in=held_product_ids(reason=HOLD_REASON))
    ).values_list("id", "partner_id"):
        by_partner.setdefault(partner_id, []).append(product_id)
    for partner_id in partner_ids | set(by_partner):
        evaluate_budgets(partner_id=partner_id, product_ids=by_partner.get(partner_id, ()))
    return len(partner_ids | set(by_partner))
