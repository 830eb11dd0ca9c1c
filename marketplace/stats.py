"""The daily funnel aggregates (``DailyFunnel``): recomputed from the raw rows, off the hot
paths.

Intake and the event endpoint write nothing here: a beat task (:func:`rollup_funnel`,
every minute) recomputes the *recent* days (today and yesterday, UTC) from the raw rows with
GROUP BY and replaces those days' aggregate rows in one transaction; older days are left
as they are (frozen).

Why that is exact: every figure is dated by a timestamp the platform sets when the row is
written (a referral's or lead's ``created_at``, an event's ``received_at``, a delivery's
``delivered_at``, a ping's or post attempt's ``started_at``), never by a partner's
``occurred_at``. So a row lands in the day it was written, give or take its transaction's
duration (seconds; a post attempt's ``started_at`` precedes its insert by at most the post's
timeout, a lead's ``delivered_at`` by at most its delivery claim). Recomputing a day is
idempotent (the same raw rows give the same counts), so a run that overlaps another, or
repeats, changes nothing; runs take a lock so that two never interleave their replacements.
A row can be missed only if it commits more than a day after its timestamp (it would date
into a day no longer in the window): the nightly pass (``days=NIGHTLY_DAYS``) recomputes the
last week, which bounds the error to rows committed more than a week late, which nothing in
the platform does. Nothing that changes a counted row's day or segment exists (a referral's
channel, tier and mode, a lead's partner and product are never updated).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from celery import shared_task
from django.db import connection, transaction
from django.db.models import Count, F, Q, Sum
from django.db.models.functions import TruncDate
from django.utils import timezone

from marketplace.models import (
    AttemptOutcome,
    DeliveryAttempt,
    EventType,
    Lead,
    LeadEvent,
    PingAttempt,
    Referral,
)
from marketplace.models.stats import DailyFunnel

RECENT_DAYS = 2  # today and yesterday
NIGHTLY_DAYS = 7
FUNNEL_EVENTS = {
    EventType.ACCEPTED: "accepted",
    EventType.APPROVED: "approved",
    EventType.FUNDED: "funded",
    EventType.RETURNED: "returned",
}
COUNTS = [
    "referred",
    "matched",
    "delivered",
    "accepted",
    "approved",
    "funded",
    "returned",
    "pings",
    "ping_timeouts",
    "ping_latency_ms_sum",
    "delivery_failures",
]
# Distinct keys for pg_advisory_xact_lock: one per rollup, so two runs of one never
# interleave (SQLite's IMMEDIATE transactions serialise writers anyway).
FUNNEL_LOCK = 0x46554E4E454C  # "FUNNEL"

Key = tuple[date, Any, Any, str, str, bool]


def window(*, days: int, now: datetime | None = None) -> tuple[date, datetime, datetime]:
    """The first day recomputed and the [start, end) instants of ``days`` UTC days to now."""
    today = (now or timezone.now()).astimezone(UTC).date()
    first = today - timedelta(days=days - 1)
    start = datetime.combine(first, time.min, tzinfo=UTC)
    return first, start, start + timedelta(days=days)


def advisory_lock(key: int) -> None:
    """Hold a transaction-scoped lock on PostgreSQL (a no-op elsewhere)."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [key])


def _day(field: str) -> TruncDate:
    return TruncDate(field, tzinfo=UTC)


def _add(
    totals: dict[Key, dict[str, int]], rows: Iterable[Mapping[str, Any]], **names: str
) -> None:
    for row in rows:
        key = (
            row["d"],
            row.get("ptn"),
            row.get("prd"),
            row["ch"],
            row["tier"],
            row["sb"],
        )
        for field, column in names.items():
            totals[key][field] += int(row[column] or 0)


def funnel_counts(*, start: datetime, end: datetime) -> dict[Key, dict[str, int]]:
    """Every figure of the days in [start, end), counted from the raw rows."""
    totals: dict[Key, dict[str, int]] = defaultdict(lambda: dict.fromkeys(COUNTS, 0))
    referrals = (
        Referral.objects.filter(created_at__gte=start, created_at__lt=end)
        .order_by()
        .values(d=_day("created_at"), ch=F("channel"), tier=F("risk_tier"), sb=F("is_sandbox"))
        .annotate(n=Count("id"))
    )
    _add(totals, referrals, referred="n")
    lead_segment = {
        "ptn": F("partner_id"),
        "prd": F("product_id"),
        "ch": F("referral__channel"),
        "tier": F("referral__risk_tier"),
        "sb": F("is_sandbox"),
    }
    for field, stamp in (("matched", "created_at"), ("delivered", "delivered_at")):
        leads = (
            Lead.objects.filter(**{f"{stamp}__gte": start, f"{stamp}__lt": end})
            .order_by()
            .values(d=_day(stamp), **lead_segment)
            .annotate(n=Count("id"))
        )
        _add(totals, leads, **{field: "n"})
    event_segment = {
        "ptn": F("lead__partner_id"),
        "prd": F("lead__product_id"),
        "ch": F("lead__referral__channel"),
        "tier": F("lead__referral__risk_tier"),
        "sb": F("lead__is_sandbox"),
    }
    recent_events = LeadEvent.objects.filter(received_at__gte=start, received_at__lt=end).order_by()
    outcomes = recent_events.filter(type__in=FUNNEL_EVENTS).values(
        "type", d=_day("received_at"), **event_segment
    )
    for row in outcomes.annotate(n=Count("id")):
        _add(totals, [row], **{FUNNEL_EVENTS[EventType(row["type"])]: "n"})
    reversals = recent_events.filter(
        type=EventType.REVERSAL, reverses__type__in=FUNNEL_EVENTS
    ).values(reversed_type=F("reverses__type"), d=_day("received_at"), **event_segment)
    for reversal in reversals.annotate(n=Count("id")):
        undone = {**reversal, "n": -reversal["n"]}
        _add(totals, [undone], **{FUNNEL_EVENTS[EventType(reversal["reversed_type"])]: "n"})
    pings = (
        PingAttempt.objects.filter(started_at__gte=start, started_at__lt=end)
        .order_by()
        .values(
            d=_day("started_at"),
            ptn=F("partner_id"),
            prd=F("product_id"),
            ch=F("auction__referral__channel"),
            tier=F("auction__referral__risk_tier"),
            sb=F("auction__referral__is_sandbox"),
        )
        .annotate(
            n=Count("id"),
            # pings.py words every timeout's reason "timed out (...)".
            timeouts=Count(
                "id", filter=Q(outcome=AttemptOutcome.ERROR, reason__startswith="timed out")
            ),
            latency=Sum("latency_ms"),
        )
    )
    _add(totals, pings, pings="n", ping_timeouts="timeouts", ping_latency_ms_sum="latency")
    failures = (
        DeliveryAttempt.objects.filter(started_at__gte=start, started_at__lt=end)
        .exclude(outcome=AttemptOutcome.SUCCESS)
        .order_by()
        .values(
            d=_day("started_at"),
            ptn=F("lead__partner_id"),
            prd=F("lead__product_id"),
            ch=F("lead__referral__channel"),
            tier=F("lead__referral__risk_tier"),
            sb=F("lead__is_sandbox"),
        )
        .annotate(n=Count("id"))
    )
    _add(totals, failures, delivery_failures="n")
    return totals


def rollup_funnel(*, days: int = RECENT_DAYS, now: datetime | None = None) -> int:
    """Replace the last ``days`` days' aggregate rows by a fresh count; returns rows written."""
    _, start, end = window(days=days, now=now)
    with transaction.atomic():
        advisory_lock(FUNNEL_LOCK)
        # Counted under the lock: a run that waited for another counts after it committed.
        totals = funnel_counts(start=start, end=end)
        DailyFunnel.objects.filter(day__gte=start.date(), day__lt=end.date()).delete()
        rows = [
            DailyFunnel(
                day=day,
                partner_id=partner,
                product_id=product,
                channel=channel,
                risk_tier=tier,
                is_sandbox=sandbox,
                **counts,
            )
            for (day, partner, product, channel, tier, sandbox), counts in totals.items()
            if any(counts.values())
        ]
        DailyFunnel.objects.bulk_create(rows, batch_size=1000)
    return len(rows)


@shared_task(name="marketplace.stats.rollup_funnel_task")
def rollup_funnel_task(days: int = RECENT_DAYS) -> int:
    return rollup_funnel(days=days)
