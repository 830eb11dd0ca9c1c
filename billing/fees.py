"""Fee schedules: validated, versioned, never overlapping in one scope.

A scope is a partner and one of its products, or the partner as a whole (``product`` NULL).
Within a scope at most one schedule is in force at any instant, so an event's price never
depends on which of two schedules a query happens to pick; a change of fees is a new
version from a date on, the previous one closed at that date.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Max, Q

from billing import fee_cards
from billing.models import Currency, FeeSchedule, FeeTier
from billing.pricing import FeeTerms, Tier
from partners.models import Partner, Product

CENT_PLACES = 2
RATE_PLACES = 4
NO_FEES = FeeTerms()  # a schedule that charges nothing (e.g. a product exempted for a while)


class FeeScheduleError(ValueError):
    """Bad schedule input; ``field`` names the input at fault."""

    def __init__(self, message: str, *, field: str = "") -> None:
        super().__init__(message)
        self.field = field


def parse_amount(value: object, *, field: str, places: int = CENT_PLACES) -> Decimal:
    """A non-negative decimal from a string, int or Decimal (never a float: 0.1 is not
    exact in binary), with at most ``places`` decimals."""
    if isinstance(value, bool | float):
        raise FeeScheduleError(f"{field} must be given as a decimal string", field=field)
    try:
        amount = Decimal(str(value).strip())
    except (InvalidOperation, ValueError):
        raise FeeScheduleError(f"{field} must be a number, got {value!r}", field=field) from None
    if not amount.is_finite():
        raise FeeScheduleError(f"{field} must be a finite number", field=field)
    if amount < 0:
        raise FeeScheduleError(f"{field} cannot be negative ({amount})", field=field)
    exponent = amount.as_tuple().exponent
    if isinstance(exponent, int) and -exponent > places:
        raise FeeScheduleError(f"{field} has more than {places} decimals ({amount})", field=field)
    if amount >= Decimal(10) ** (11 if places == CENT_PLACES else 2):
        raise FeeScheduleError(f"{field} is too large ({amount})", field=field)
    return amount


def check_currency(currency: str) -> str:
    if currency not in Currency.values:
        known = ", ".join(Currency.values)
        raise FeeScheduleError(
            f"unknown currency {currency!r}; we bill in {known}", field="currency"
        )
    return currency


def describe(schedule: FeeSchedule) -> str:
    until = f"{schedule.effective_to:%Y-%m-%d %H:%M}" if schedule.effective_to else "open-ended"
    scope = f"product {schedule.product.name}" if schedule.product else "all products"
    return (
        f"schedule #{schedule.pk} v{schedule.version} for {schedule.partner.name} ({scope}), "
        f"from {schedule.effective_from:%Y-%m-%d %H:%M} to {until}"
    )


def overlapping(
    *,
    partner_id: Any,
    product_id: Any,
    effective_from: datetime,
    effective_to: datetime | None,
    exclude_id: int | None = None,
) -> FeeSchedule | None:
    """The first schedule of the same scope whose span meets [from, to)."""
    same_scope = FeeSchedule.objects.filter(partner_id=partner_id).select_related(
        "partner", "product"
    )
    same_scope = (
        same_scope.filter(product_id=product_id)
        if product_id
        else same_scope.filter(product__isnull=True)
    )
    clash = same_scope.filter(Q(effective_to__isnull=True) | Q(effective_to__gt=effective_from))
    if effective_to is not None:
        clash = clash.filter(effective_from__lt=effective_to)
    if exclude_id is not None:
        clash = clash.exclude(pk=exclude_id)
    return clash.order_by("effective_from").first()


def check_no_overlap(
    *,
    partner: Partner,
    product: Product | None,
    effective_from: datetime,
    effective_to: datetime | None,
    exclude_id: int | None = None,
) -> None:
    if effective_to is not None and effective_to <= effective_from:
        raise FeeScheduleError("effective_to must be after effective_from", field="effective_to")
    clash = overlapping(
        partner_id=partner.pk,
        product_id=product.pk if product else None,
        effective_from=effective_from,
        effective_to=effective_to,
        exclude_id=exclude_id,
    )
    if clash is not None:
        new = FeeSchedule(
            partner=partner,
            product=product,
            version=0,
            effective_from=effective_from,
            effective_to=effective_to,
        )
        raise FeeScheduleError(
            f"the new {describe(new).replace('#None v0 ', '')} overlaps {describe(clash)}",
            field="effective_from",
        )


def create_fee_schedule(
    *,
    partner: Partner,
    effective_from: datetime,
    terms: FeeTerms = NO_FEES,
    product: Product | None = None,
    effective_to: datetime | None = None,
    currency: str | None = None,
    close_previous: bool = False,
) -> FeeSchedule:
    """A new schedule version charging ``terms``. ``close_previous`` ends an open-ended
    schedule of the same scope at ``effective_from`` (a fee change from a date on); anything
    else overlapping is refused with a message naming both schedules. Without ``currency``,
    the schedule bills in the platform currency (``DEFAULT_CURRENCY``)."""
    if product is not None and product.partner_id != partner.pk:
        raise FeeScheduleError("the product belongs to another partner", field="product")
    currency = check_currency(currency or settings.DEFAULT_CURRENCY)
    fees = _checked_fees(terms)
    tier_rows = [_tier(t) for t in terms.tiers]
    if len({t.from_count for t in tier_rows}) != len(tier_rows):
        raise FeeScheduleError("two tiers start at the same count", field="tiers")
    with transaction.atomic():
        # Serialise schedule changes per partner: two concurrent creations would each
        # miss the other's overlap.
        Partner.objects.select_for_update().get(pk=partner.pk)
        if close_previous:
            _close_open_ended(partner=partner, product=product, at=effective_from)
        check_no_overlap(
            partner=partner,
            product=product,
            effective_from=effective_from,
            effective_to=effective_to,
        )
        scope = FeeSchedule.objects.filter(partner=partner, product=product)
        version = (scope.aggregate(v=Max("version"))["v"] or 0) + 1
        schedule = FeeSchedule.objects.create(
            partner=partner,
            product=product,
            version=version,
            currency=currency,
            effective_from=effective_from,
            effective_to=effective_to,
            **fees,
        )
        for tier in tier_rows:
            tier.schedule = schedule
        FeeTier.objects.bulk_create(tier_rows)
        # Routing ranks by the fees in force (marketplace.fee_cards): keep its cards equal.
        fee_cards.sync_partner(partner_id=partner.pk)
        return schedule


def _checked_fees(terms: FeeTerms) -> dict[str, Decimal | None]:
    """The schedule's fee columns from ``terms``, each checked (``parse_amount``: no floats,
    no negatives, at most cents or four decimals of a rate); rates are fractions of at most
    1, and a CPF maximum is not below its minimum."""
    rate = parse_amount(terms.cpf_rate, field="cpf_rate", places=RATE_PLACES)
    low = parse_amount(terms.cpf_min, field="cpf_min")
    high = None if terms.cpf_max in (None, "") else parse_amount(terms.cpf_max, field="cpf_max")
    if rate > 1:
        raise FeeScheduleError("cpf_rate is a fraction of principal (0.03 = 3%)", field="cpf_rate")
    share = parse_amount(terms.revshare_rate, field="revshare_rate", places=RATE_PLACES)
    if share > 1:
        raise FeeScheduleError(
            "revshare_rate is a fraction of reported revenue (0.10 = 10%)", field="revshare_rate"
        )
    if high is not None and high < low:
        raise FeeScheduleError("cpf_max is below cpf_min", field="cpf_max")
    return {
        "cpl": parse_amount(terms.cpl, field="cpl"),
        "cpa": parse_amount(terms.cpa, field="cpa"),
        "cpf_rate": rate,
        "cpf_min": low,
        "cpf_max": high,
        "revshare_rate": share,
    }


def _tier(tier: Tier) -> FeeTier:
    try:
        from_count = int(tier.from_count)
    except (TypeError, ValueError):
        raise FeeScheduleError("a tier needs a whole from_count", field="tiers") from None
    if from_count < 1:
        raise FeeScheduleError("a tier's from_count is at least 1", field="tiers")

    def fee(name: str, places: int = CENT_PLACES) -> Decimal | None:
        value = getattr(tier, name)
        return (
            None
            if value in (None, "")
            else parse_amount(value, field=f"tiers.{name}", places=places)
        )

    return FeeTier(
        from_count=from_count,
        cpl=fee("cpl"),
        cpa=fee("cpa"),
        cpf_rate=fee("cpf_rate", RATE_PLACES),
    )


def _close_open_ended(*, partner: Partner, product: Product | None, at: datetime) -> None:
    open_ended = FeeSchedule.objects.filter(
        partner=partner, product=product, effective_to__isnull=True, effective_from__lt=at
    )
    for schedule in open_ended:
        if schedule.charges.filter(occurred_at__gte=at).exists():
            raise FeeScheduleError(
                f"{describe(schedule)} already priced events after {at:%Y-%m-%d %H:%M}",
                field="effective_from",
            )
        schedule.effective_to = at
        schedule.save(update_fields=["effective_to"])
