"""Marginal tiers: how a partner's units of a month are numbered, and which months need
their prices brought up to date.

A unit is a live billable event (accepted, approved, funded). Its number in the month is
1 + the partner's live events of the same type in the same UTC month before it by
(occurred_at, the partner's event id, compared by code point). Every reported unit counts,
reversed and returned ones too, so a correction never renumbers anything; a unit reported
late renumbers the ones after it (:func:`renumbers`), and ``billing.charging.retier_months``
reprices them.
"""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from typing import Protocol

from django.db import connection
from django.db.models import Max, Q, Value
from django.db.models.functions import Collate, TruncMonth

from billing.models import Charge, EntryType, FeeSchedule, FeeTier, Invoice
from billing.periods import month_bounds, month_of, month_start, next_month
from billing.pricing import EVENT_FEE_KIND
from marketplace.models import LeadEvent

# Fees priced by a unit's number in the month (marginal tiers); revenue share never is.
TIERED_KINDS = {"cpl", "cpa", "cpf"}
KIND_EVENT = {kind: event_type for event_type, kind in EVENT_FEE_KIND.items()}
UNIT_TYPES = [KIND_EVENT[kind] for kind in sorted(TIERED_KINDS)]


def unit_number(event: LeadEvent) -> int:
    """The event's number among the partner's live units of its type in its UTC month,
    ordered by (occurred_at, the partner's event id). Every reported unit counts,
    reversed and returned ones too, so a correction never renumbers anything."""
    start, end = month_bounds(event.occurred_at)
    events = LeadEvent.objects.all()
    tie = Q(occurred_at=event.occurred_at, external_id__lt=event.external_id)
    if connection.vendor == "postgresql":
        # Event ids compare by code point (as Python and SQLite do), not by the locale.
        events = events.annotate(id_c=Collate("external_id", "C"))
        tie = Q(occurred_at=event.occurred_at, id_c__lt=Collate(Value(event.external_id), "C"))
    earlier = events.filter(
        Q(occurred_at__lt=event.occurred_at) | tie,
        partner_id=event.partner_id,
        type=event.type,
        lead__is_sandbox=False,
        occurred_at__gte=start,
        occurred_at__lt=end,
    )
    return earlier.count() + 1


def tiered_months(partner_id: uuid.UUID, months: set[date]) -> set[date]:
    """The months among ``months`` in which some schedule of the partner has tiers."""
    tiered = set()
    for month in months:
        start, end = month_start(month), month_start(next_month(month))
        spans = FeeSchedule.objects.filter(
            Q(effective_to__isnull=True) | Q(effective_to__gt=start),
            partner_id=partner_id,
            effective_from__lt=end,
        )
        if FeeTier.objects.filter(schedule__in=spans).exists():
            tiered.add(month)
    return tiered


def unit_lead_ids(*, partner_id: uuid.UUID, month: date) -> list[uuid.UUID]:
    """The partner's live leads with a unit in ``month``."""
    start, end = month_start(month), month_start(next_month(month))
    return list(
        LeadEvent.objects.filter(
            partner_id=partner_id,
            type__in=UNIT_TYPES,
            lead__is_sandbox=False,
            occurred_at__gte=start,
            occurred_at__lt=end,
        )
        .values_list("lead_id", flat=True)
        .distinct()
    )


class TieredSchedules(Protocol):
    def tiered_during(self, start: datetime, end: datetime) -> bool: ...


class SchedulesSource(Protocol):
    """Where the caller's partner schedules come from (``billing.quotes.LivePricer``)."""

    def schedules(self, partner_id: uuid.UUID) -> TieredSchedules: ...


def renumbers(
    event: LeadEvent, *, pricer: SchedulesSource | None = None
) -> tuple[uuid.UUID, date] | None:
    """(partner, month) when ``event`` is a unit reported after units dated later in its
    month: those were renumbered and wait for :func:`retier_months` (queued after commit;
    invoicing runs it anyway). Whether or not the event itself was charged. With the
    caller's ``pricer`` (the partner's schedules, read in the caller's transaction to
    charge the event): None without counting when no schedule in force in the month has
    tiers, since re-tiering an untiered month changes nothing (:func:`tiered_months`)."""
    if event.type not in UNIT_TYPES or event.lead.is_sandbox:
        return None
    start, end = month_bounds(event.occurred_at)
    if pricer is not None and not pricer.schedules(event.partner_id).tiered_during(start, end):
        return None
    later = LeadEvent.objects.filter(
        partner_id=event.partner_id,
        type=event.type,
        lead__is_sandbox=False,
        occurred_at__gt=event.occurred_at,
        occurred_at__lt=end,
    )
    if not later.exists():
        return None
    return event.partner_id, month_of(event.occurred_at)


def months_to_retier(*, partner_id: uuid.UUID, first: date, last: date) -> set[date]:
    """The months whose unit numbers may have moved since the partner was last invoiced:
    those of the tiered units billed in periods [first, last], and those of every unit
    reported since (a late unit renumbers its month even when it is not charged itself:
    no schedule at its time, a returned lead)."""
    months = {
        at.date()
        for at in Charge.objects.filter(
            partner_id=partner_id,
            period__gte=first,
            period__lte=last,
            entry_type=EntryType.CHARGE,
            kind__in=TIERED_KINDS,
        )
        .annotate(month=TruncMonth("event__occurred_at", tzinfo=UTC))
        .values_list("month", flat=True)
        .distinct()
    }
    since = Invoice.objects.filter(partner_id=partner_id).aggregate(at=Max("created_at"))["at"]
    reported = LeadEvent.objects.filter(
        partner_id=partner_id,
        type__in=UNIT_TYPES,
        lead__is_sandbox=False,
    )
    if since is not None:
        reported = reported.filter(received_at__gte=since)
    months |= {
        at.date()
        for at in reported.annotate(month=TruncMonth("occurred_at", tzinfo=UTC))
        .values_list("month", flat=True)
        .distinct()
    }
    return months
