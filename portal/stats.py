"""The partner's funnel over a date range, from its own leads and their standing events."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from django.db.models import Count

from marketplace.models import EventType, LeadStatus
from portal import selectors
from portal.access import Portal

# Funnel stages after delivery: a lead counts at a stage when an event of that type of it
# stands (not reversed), whatever came after (a funded lead was also approved).
STAGES = [EventType.ACCEPTED, EventType.APPROVED, EventType.FUNDED, EventType.RETURNED]


@dataclass(frozen=True)
class Funnel:
    since: date
    until: date  # inclusive
    leads: int
    delivered: int
    stages: list[tuple[str, int]]  # (label, leads)
    by_status: list[tuple[str, int]]  # (label, leads), every status, in the model's order


def _bounds(since: date, until: date) -> tuple[datetime, datetime]:
    start = datetime.combine(since, time.min, tzinfo=UTC)
    end = datetime.combine(until + timedelta(days=1), time.min, tzinfo=UTC)
    return start, end


def funnel(*, portal: Portal, since: date, until: date) -> Funnel:
    """Leads created from ``since`` through ``until`` (UTC days)."""
    start, end = _bounds(since, until)
    leads = selectors.leads(portal).filter(created_at__gte=start, created_at__lt=end)
    counts = dict(leads.order_by().values_list("status").annotate(n=Count("id")))
    events = (
        selectors.lead_events(portal)
        .filter(lead__in=leads.values("id"), type__in=STAGES, reversed_by__isnull=True)
        .order_by()
        .values_list("type")
        .annotate(n=Count("lead_id", distinct=True))
    )
    reached = dict(events)
    return Funnel(
        since=since,
        until=until,
        leads=sum(counts.values()),
        delivered=leads.filter(delivered_at__isnull=False).count(),
        stages=[(EventType(stage).label, reached.get(stage, 0)) for stage in STAGES],
        by_status=[(label, counts.get(value, 0)) for value, label in LeadStatus.choices],
    )
