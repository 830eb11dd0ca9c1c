"""Exchange rates: dated, entered by finance with their source, never inferred.

A fee is booked in its schedule's currency. When the amount it is priced from (a funded
principal, reported revenue, an auction bid) is in another currency, that amount is
converted first with the rate in force at the event's time: ``to_cents(amount * rate)``.
Only the direction finance entered is used (no inversion of the opposite pair: 1/7.1 is
not what a bank quotes). With no rate in force the fee waits (``PendingFee``): never a
silent relabel of one currency as another. A rate that would change a conversion
already booked is refused: booked charges keep the rate they recorded.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from django.db import IntegrityError, transaction

from billing.models import Charge, Currency, EntryType, ExchangeRate
from billing.money import to_cents

RATE_PLACES = Decimal("0.00000001")
MAX_RATE = Decimal("1000000")


class ExchangeRateError(ValueError):
    def __init__(self, message: str, *, field: str = "") -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class Conversion:
    """An amount converted into the fee's currency, and how."""

    amount: Decimal  # in the target currency, rounded to cents
    source_amount: Decimal
    source_currency: str
    rate: ExchangeRate


def _parse_rate(value: object) -> Decimal:
    try:
        rate = Decimal(str(value).strip()) if not isinstance(value, Decimal) else value
    except InvalidOperation:
        raise ExchangeRateError(f"rate {value!r} is not a number", field="rate") from None
    if not rate.is_finite() or rate <= 0 or rate > MAX_RATE:
        raise ExchangeRateError(f"rate must be positive and at most {MAX_RATE}", field="rate")
    if rate != rate.quantize(RATE_PLACES):
        raise ExchangeRateError("rate has at most 8 decimal places", field="rate")
    return rate


def check_rate(
    *, from_currency: str, to_currency: str, rate: object, effective_from: datetime, source: str
) -> Decimal:
    """The rate as a Decimal, or :class:`ExchangeRateError` naming the field at fault
    (the admin form shows it; :func:`record_rate` checks the same before writing)."""
    for name, code in (("from_currency", from_currency), ("to_currency", to_currency)):
        if code not in Currency.values:
            raise ExchangeRateError(f"unknown currency {code!r}", field=name)
    if from_currency == to_currency:
        raise ExchangeRateError("a rate converts between two currencies", field="to_currency")
    if not source.strip():
        raise ExchangeRateError("say where the rate comes from", field="source")
    if effective_from.tzinfo is None:
        raise ExchangeRateError("effective_from needs a time zone", field="effective_from")
    parsed = _parse_rate(rate)
    # A rate never changes a conversion already booked: it would reprice charges that
    # invoices and statements already show. Those stay at the rate they recorded.
    overtaken = Charge.objects.filter(
        entry_type=EntryType.CHARGE,
        exchange_rate__from_currency=from_currency,
        exchange_rate__to_currency=to_currency,
        exchange_rate__effective_from__lt=effective_from,
        event__occurred_at__gte=effective_from,
    ).count()
    if overtaken:
        raise ExchangeRateError(
            f"{overtaken} fee(s) of events after {effective_from:%Y-%m-%d %H:%M} were already "
            f"converted at the {from_currency}->{to_currency} rate then in force; enter this "
            "rate from a time after them",
            field="effective_from",
        )
    return parsed


def record_rate(
    *,
    from_currency: str,
    to_currency: str,
    rate: object,
    effective_from: datetime,
    source: str,
    user: Any = None,
) -> ExchangeRate:
    """Enter a rate: 1 ``from_currency`` = ``rate`` ``to_currency`` from ``effective_from``.
    Fees waiting for it are booked by the catch-up charger
    (``billing.charging.charge_unbilled_events``)."""
    parsed = check_rate(
        from_currency=from_currency,
        to_currency=to_currency,
        rate=rate,
        effective_from=effective_from,
        source=source,
    )
    try:
        with transaction.atomic():
            return ExchangeRate.objects.create(
                from_currency=from_currency,
                to_currency=to_currency,
                rate=parsed,
                effective_from=effective_from,
                source=source.strip()[:200],
                entered_by=user if getattr(user, "pk", None) else None,
            )
    except IntegrityError:
        raise ExchangeRateError(
            f"a {from_currency}->{to_currency} rate from {effective_from:%Y-%m-%d %H:%M} exists "
            "already: enter the correction with a later effective time",
            field="effective_from",
        ) from None


def rate_in_force(*, from_currency: str, to_currency: str, at: datetime) -> ExchangeRate | None:
    return (
        ExchangeRate.objects.filter(
            from_currency=from_currency, to_currency=to_currency, effective_from__lte=at
        )
        .order_by("-effective_from")
        .first()
    )


def convert(
    *, amount: Decimal, from_currency: str, to_currency: str, at: datetime
) -> Conversion | None:
    """``amount`` in ``to_currency`` at the rate in force at ``at``; None without a rate.
    Same currency: no conversion is needed; callers check that first."""
    rate = rate_in_force(from_currency=from_currency, to_currency=to_currency, at=at)
    if rate is None:
        return None
    return conversion(amount=amount, rate=rate)


def conversion(*, amount: Decimal, rate: ExchangeRate) -> Conversion:
    """``amount`` (in the rate's ``from_currency``) at ``rate``: the one conversion rule,
    whichever path found the rate."""
    return Conversion(
        amount=to_cents(amount * rate.rate),
        source_amount=amount,
        source_currency=rate.from_currency,
        rate=rate,
    )
