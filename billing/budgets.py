"""Monthly budget caps: a partner's (or one product's) ``monthly_budget`` bounds what its
leads of a UTC month commit it to. Hard at the award, held from routing once spent.

The spend of a month (what the budget is compared with) is

    reserved + charged

- *reserved*: what the month's awarded leads reserved when they were awarded
  (``marketplace.caps``: each lead's CPL, its winning bid or the CPL of the fee schedule
  in force, in the budget currency), less what leads that never reached the partner gave
  back. Counted by compare-and-set in the award's transaction, which refuses a lead whose
  price would take ``reserved + charged`` past the budget: concurrent awards never
  overshoot it.
- *charged*: the month's ledger entries in the budget currency, net of credits and
  reversals, **except** the CPL entries of a lead holding a reservation (its reservation
  stands for them, whatever they come to and whenever they are booked). What remains are
  the charges that arrive later for approval, funding or revenue share, corrections, and
  the CPL of a lead that reserved nothing. They are billed regardless (the partner owes
  them), so they may take the spend past the budget; no lead is awarded after that.
  Written here, after every charge, into the ``charged`` cap counter
  (:func:`evaluate_budgets`), which awards read without a lock.

Budgets are in the platform currency (``DEFAULT_CURRENCY``, CNY): only entries in it
count (``Charge.period``, the partner's ``charge_billing_period`` index). Evaluated after
every charge (in the charge's transaction), when ops save a partner's or product's budget
in the admin (``billing.partner_admin``: billing's own admin for those models calls
:func:`evaluate_budgets` after the save), and hourly by beat (:func:`sweep_budgets`),
which lifts last month's holds once a new month starts and catches anything the other
paths missed.

A budget places and lifts only its own hold (``HoldReason.BUDGET``, partner-wide or on one
product) on the same sum, so matching stops offering a spent budget at once; the hold is
a fast path, the award's compare-and-set is the authority. A hold of ops or of the credit
limit stands beside it, untouched.
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
from billing.models import Charge, FeeKind
from marketplace import cap_reconcile
from marketplace.cap_reconcile import CounterDrift
from marketplace.models import CapCounter, CapKind, CapReservation, CapScope
from partners.holds import active_holds, held_partner_ids, held_product_ids, lift_hold, place_hold
from partners.models import HoldReason, Partner, Product
from partners.months import month_of

HOLD_REASON = HoldReason.BUDGET
BUDGET_CURRENCY = settings.DEFAULT_CURRENCY  # budgets are amounts in the platform currency
ZERO = Decimal("0.00")


def current_month() -> date:
    """The first day of the current UTC month (a ``Charge.period`` value)."""
    return month_of(timezone.now())


def _month_charges(partner_id: uuid.UUID, month: date | None = None) -> QuerySet[Charge]:
    return Charge.objects.filter(
        partner_id=partner_id, currency=BUDGET_CURRENCY, period=month or current_month()
    )


def _covered(amount_field: str) -> Exists:
    """Whether a charge's lead holds a reservation for this budget (scope by its amount
    column): its CPL entries are counted by that reservation, not here."""
    return Exists(
        CapReservation.objects.filter(
            lead_id=OuterRef("lead_id"),
            released_at__isnull=True,
            **{f"{amount_field}__isnull": False},
        )
    )


def month_to_date(
    *, partner_id: uuid.UUID, product_ids: Iterable[uuid.UUID] = ()
) -> tuple[Decimal, dict[uuid.UUID, Decimal]]:
    """This month's spend (reserved + charged, see the module docstring) of the partner,
    and of each of ``product_ids``."""
    charged, per_product = month_charged(partner_id=partner_id, product_ids=product_ids)
    reserved = _reserved(partner_id, per_product)
    total = charged + reserved.get((CapScope.PARTNER, partner_id), ZERO)
    return total, {
        pid: amount + reserved.get((CapScope.PRODUCT, pid), ZERO)
        for pid, amount in per_product.items()
    }


def month_charged(
    *, partner_id: uuid.UUID, product_ids: Iterable[uuid.UUID] = (), month: date | None = None
) -> tuple[Decimal, dict[uuid.UUID, Decimal]]:
    """This month's (or ``month``'s) charges beyond the reservations, of the partner and
    of each of ``product_ids``, in one aggregate."""
    ids = list(dict.fromkeys(product_ids))
    cpl = Q(kind=FeeKind.CPL)
    beyond = Q(partner_covered=False) | ~cpl
    sums = {
        f"p{i}": Sum("amount", filter=Q(product_id=pid) & (Q(product_covered=False) | ~cpl))
        for i, pid in enumerate(ids)
    }
    charges = _month_charges(partner_id, month).annotate(partner_covered=_covered("partner_amount"))
    if ids:
        charges = charges.annotate(product_covered=_covered("product_amount"))
    row = charges.aggregate(total=Sum("amount", filter=beyond), **sums)
    return row["total"] or ZERO, {pid: row[f"p{i}"] or ZERO for i, pid in enumerate(ids)}


def _reserved(
    partner_id: uuid.UUID, product_ids: Iterable[uuid.UUID]
) -> dict[tuple[str, uuid.UUID], Decimal]:
    """The month's reserved counters of the partner and these products."""
    owners = Q(scope=CapScope.PARTNER, owner_id=partner_id)
    for product_id in product_ids:
        owners |= Q(scope=CapScope.PRODUCT, owner_id=product_id)
    rows = CapCounter.objects.filter(
        owners, kind=CapKind.RESERVED, period=current_month(), is_sandbox=False
    ).values_list("scope", "owner_id", "used")
    return {(scope, owner): used for scope, owner, used in rows}


def _write_charged(
    partner_id: uuid.UUID, product_ids: list[uuid.UUID]
) -> tuple[Decimal, dict[uuid.UUID, Decimal]]:
    """Bring the month's ``charged`` counters of the partner and these products to the
    ledger, and return the month's spend (reserved + charged). The counters are locked
    first (products, then the partner: the cap lock order), so the aggregate, a new
    snapshot read after the locks, sees every charge of a concurrent writer that held them
    before: the last writer writes the whole sum."""
    month = current_month()
    keys = [
        *((CapScope.PRODUCT.value, pid) for pid in sorted(product_ids, key=str)),
        (CapScope.PARTNER.value, partner_id),
    ]
    CapCounter.objects.bulk_create(
        [
            CapCounter(scope=scope, owner_id=owner, kind=CapKind.CHARGED, period=month)
            for scope, owner in keys
        ],
        ignore_conflicts=True,
    )
    where = Q()
    for scope, owner in keys:
        where |= Q(scope=scope, owner_id=owner)
    list(
        CapCounter.objects.select_for_update(no_key=True, of=("self",))
        .filter(where, kind=CapKind.CHARGED, period=month, is_sandbox=False)
        .order_by("-scope", "owner_id")  # products before partners ("product" > "partner")
        .values_list("id")
    )
    charged, per_product = month_charged(partner_id=partner_id, product_ids=product_ids)
    for scope, owner in keys:
        CapCounter.objects.filter(
            scope=scope, owner_id=owner, kind=CapKind.CHARGED, period=month, is_sandbox=False
        ).update(used=charged if scope == CapScope.PARTNER else per_product[owner])
    reserved = _reserved(partner_id, product_ids)
    return charged + reserved.get((CapScope.PARTNER, partner_id), ZERO), {
        pid: amount + reserved.get((CapScope.PRODUCT, pid), ZERO)
        for pid, amount in per_product.items()
    }


def charged_drift(*, month: date) -> tuple[int, list[CounterDrift]]:
    """Billing's part of the cap reconciliation (``marketplace.cap_reconcile``): every
    live ``charged`` counter of ``month`` against the month's charges beyond the
    reservations, recomputed from the ledger. Only counters that exist are checked (they
    exist for the partners and products a budget concerned). Reported, never repaired here:
    the next charge or the hourly :func:`sweep_budgets` rewrites a current month's counter
    from the ledger. Returns the counters checked and the drifts."""
    with cap_reconcile.snapshot():
        found = cap_reconcile.found_counts(month, (CapKind.CHARGED,))
        # Live only, and only owners with a budget now: a counter is written only while a
        # budget concerns its owner (a partner's also for its budgeted products' charges).
        budgeted = set(
            Product.objects.filter(monthly_budget__isnull=False).values_list("id", flat=True)
        ) | set(Partner.objects.filter(monthly_budget__isnull=False).values_list("id", flat=True))
        found = {key: used for key, used in found.items() if not key[4] and key[1] in budgeted}
        owners = {key[1] for key in found if key[0] == CapScope.PRODUCT}
        partner_of = dict(
            Product.objects.filter(pk__in=owners).order_by().values_list("id", "partner_id")
        )
        by_partner: dict[uuid.UUID, list[uuid.UUID]] = {}
        for scope, owner, _, _, _ in found:
            if scope == CapScope.PARTNER:
                by_partner.setdefault(owner, [])
            elif owner in partner_of:
                by_partner.setdefault(partner_of[owner], []).append(owner)
        expected: dict[cap_reconcile.CounterKey, Decimal] = {}
        for partner_id, product_ids in by_partner.items():
            total, per_product = month_charged(
                partner_id=partner_id, product_ids=product_ids, month=month
            )
            expected[(CapScope.PARTNER, partner_id, CapKind.CHARGED, month, False)] = total
            for product_id, amount in per_product.items():
                expected[(CapScope.PRODUCT, product_id, CapKind.CHARGED, month, False)] = amount
    # Only the counters there are compared (an unconcerned partner has none).
    expected = {key: amount for key, amount in expected.items() if key in found}
    return cap_reconcile.compare(
        {key: cap_reconcile.cents(amount) for key, amount in expected.items()}, found
    )


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
    total, per_product = _write_charged(partner_id, [p[0] for p in products])
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
