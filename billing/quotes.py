"""What one unit costs: the schedule in force, its unit number, a conversion, the price.

One function prices a unit on every path (:func:`quote`); the paths differ only in how it
gets its inputs, through a :class:`Pricer`:

- the live path (one lead, ``billing.charging.settle_lead``) reads as it goes: the unit's
  number by one count (``billing.tiers.unit_number``), the rate by one query
  (``billing.fx.rate_in_force``);
- the catch-up path (many leads, ``billing.catchup``) reads each input once for a batch and
  picks from memory, by the same rules.

The arithmetic itself is ``billing.pricing.price`` and ``billing.fx.conversion`` on both.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Protocol, cast

from django.db.models import F

from billing import fx, tiers
from billing.models import ExchangeRate, FeeSchedule
from billing.money import to_cents
from billing.pricing import FeeTerms, Tier, price
from billing.rows import EventLike, LeadLike
from marketplace.models import Lead, LeadEvent


class Schedules:
    """A partner's fee schedules (with their tiers), read once and picked from in memory:
    settling a lead prices several units, each by the schedule in force at its time."""

    def __init__(
        self,
        schedules: Iterable[FeeSchedule],
        tiers: dict[int, tuple[Tier, ...]] | None = None,
    ) -> None:
        self._all = sorted(schedules, key=lambda s: s.effective_from, reverse=True)
        self._terms: dict[int, FeeTerms] = {}
        self._tiers = tiers  # by schedule, when read with the schedules (else prefetched)

    def terms(self, schedule: FeeSchedule) -> FeeTerms:
        """The schedule's terms, built once per schedule."""
        if schedule.pk not in self._terms:
            self._terms[schedule.pk] = (
                terms_of(schedule)
                if self._tiers is None
                else _terms(schedule, self._tiers[schedule.pk])
            )
        return self._terms[schedule.pk]

    @classmethod
    def of(cls, rows: Iterable[tuple[FeeSchedule, tuple[Tier, ...]]]) -> Schedules:
        """From schedules read with their tiers (``billing.locks``)."""
        rows = list(rows)
        return cls([s for s, _ in rows], {s.pk: tiers for s, tiers in rows})

    @classmethod
    def read(cls, partner_id: uuid.UUID) -> Schedules:
        """One partner's schedules and their tiers, in one query (a row per tier)."""
        rows = (
            FeeSchedule.objects.filter(partner_id=partner_id)
            .annotate(
                tier_from=F("tiers__from_count"),
                tier_cpl=F("tiers__cpl"),
                tier_cpa=F("tiers__cpa"),
                tier_cpf_rate=F("tiers__cpf_rate"),
            )
            .order_by("pk", "tier_from")
        )
        schedules: dict[int, FeeSchedule] = {}
        by_schedule: dict[int, list[Tier]] = {}
        for row in rows:
            schedules.setdefault(row.pk, row)
            found = by_schedule.setdefault(row.pk, [])
            if row.tier_from is not None:
                found.append(Tier(row.tier_from, row.tier_cpl, row.tier_cpa, row.tier_cpf_rate))
        return cls(schedules.values(), {pk: tuple(found) for pk, found in by_schedule.items()})

    def tiered_during(self, start: datetime, end: datetime) -> bool:
        """Whether a schedule in force at some time in [start, end) has tiers (the rule of
        ``billing.tiers.tiered_months``)."""
        return any(
            self.terms(s).tiers
            for s in self._all
            if s.effective_from < end and (s.effective_to is None or s.effective_to > start)
        )

    def in_force(self, *, product_id: uuid.UUID, at: datetime) -> FeeSchedule | None:
        """The product's own schedule if there is one at that time, else the partner's."""
        spans = [
            s
            for s in self._all
            if s.effective_from <= at and (s.effective_to is None or s.effective_to > at)
        ]
        own = next((s for s in spans if s.product_id == product_id), None)
        return own or next((s for s in spans if s.product_id is None), None)


def schedule_in_force(*, lead: Lead, at: datetime) -> FeeSchedule | None:
    return Schedules.read(lead.partner_id).in_force(product_id=lead.product_id, at=at)


def terms_of(schedule: FeeSchedule) -> FeeTerms:
    return _terms(
        schedule, tuple(Tier(t.from_count, t.cpl, t.cpa, t.cpf_rate) for t in schedule.tiers.all())
    )


def _terms(schedule: FeeSchedule, tiers: tuple[Tier, ...]) -> FeeTerms:
    return FeeTerms(
        cpl=schedule.cpl,
        cpa=schedule.cpa,
        cpf_rate=schedule.cpf_rate,
        cpf_min=schedule.cpf_min,
        cpf_max=schedule.cpf_max,
        revshare_rate=schedule.revshare_rate,
        tiers=tiers,
    )


class Pricer(Protocol):
    """Where :func:`quote` gets what it does not compute."""

    def schedules(self, partner_id: uuid.UUID) -> Schedules: ...

    def unit_number(self, event: EventLike) -> int: ...

    def rate_in_force(
        self, *, from_currency: str, to_currency: str, at: datetime
    ) -> ExchangeRate | None: ...


class LivePricer:
    """Reads as it goes: one lead's few units (the live path)."""

    def __init__(self) -> None:
        self._schedules: dict[uuid.UUID, Schedules] = {}

    def knows(self, partner_id: uuid.UUID, schedules: Schedules) -> None:
        """The partner's schedules, read by the caller in this transaction."""
        self._schedules[partner_id] = schedules

    def schedules(self, partner_id: uuid.UUID) -> Schedules:
        if partner_id not in self._schedules:
            self._schedules[partner_id] = Schedules.read(partner_id)
        return self._schedules[partner_id]

    def unit_number(self, event: EventLike) -> int:
        # The live path settles model instances; the count reads the event's own columns.
        return tiers.unit_number(cast(LeadEvent, event))

    def rate_in_force(
        self, *, from_currency: str, to_currency: str, at: datetime
    ) -> ExchangeRate | None:
        return fx.rate_in_force(from_currency=from_currency, to_currency=to_currency, at=at)


@dataclass(frozen=True)
class Quote:
    """What one unit costs, in ``currency``, and how a reported amount was converted."""

    amount: Decimal
    currency: str
    schedule: FeeSchedule | None
    unit: int | None
    conversion: fx.Conversion | None = None


@dataclass(frozen=True)
class NeedsRate:
    """The unit cannot be priced yet: no ``from_currency`` -> ``to_currency`` rate in force."""

    from_currency: str
    to_currency: str


def _converted(
    amount: Decimal, *, source: str, target: str, at: datetime, pricer: Pricer
) -> tuple[Decimal, fx.Conversion | None] | NeedsRate:
    """``amount`` in ``target`` (and the conversion, when there was one)."""
    if source == target:
        return amount, None
    rate = pricer.rate_in_force(from_currency=source, to_currency=target, at=at)
    if rate is None:
        return NeedsRate(source, target)
    conversion = fx.conversion(amount=amount, rate=rate)
    return conversion.amount, conversion


def quote(event: EventLike, lead: LeadLike, kind: str, pricer: Pricer) -> Quote | NeedsRate | None:
    """The price of the unit ``event`` makes (None: no schedule in force, and no bid)."""
    schedules = pricer.schedules(lead.partner_id)
    schedule = schedules.in_force(product_id=lead.product_id, at=event.occurred_at)
    if kind == "cpl" and lead.bid_amount is not None:
        # An auction lead pays its bid (tiers never discount a price the partner bid),
        # in the schedule's currency when there is one.
        target = schedule.currency if schedule is not None else lead.bid_currency
        bid = _converted(
            lead.bid_amount,
            source=lead.bid_currency,
            target=target,
            at=event.occurred_at,
            pricer=pricer,
        )
        if isinstance(bid, NeedsRate):
            return bid
        amount, conversion = bid
        return Quote(to_cents(amount), target, schedule, None, conversion)
    if schedule is None:
        return None
    terms = schedules.terms(schedule)
    unit = pricer.unit_number(event) if terms.tiers and kind in tiers.TIERED_KINDS else None
    # CPF is a share of the principal, revenue share of the revenue: both reported by the
    # partner in the event's currency, converted before pricing.
    reported = {"cpf": event.principal, "revshare": event.amount}.get(kind)
    conversion = None
    if reported is not None:
        converted = _converted(
            reported,
            source=event.currency,
            target=schedule.currency,
            at=event.occurred_at,
            pricer=pricer,
        )
        if isinstance(converted, NeedsRate):
            return converted
        reported, conversion = converted
    amount = price(
        kind,
        terms,
        principal=reported if kind == "cpf" else None,
        unit=unit or 1,
        revenue=reported if kind == "revshare" else None,
    )
    return Quote(amount, schedule.currency, schedule, unit, conversion)
