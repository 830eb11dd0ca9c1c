"""Daily revenue aggregates (``DailyRevenue``), recomputed from the charge ledger off the
hot paths, as marketplace.stats does for the funnel (same window, same reasons).

Charge rows are append-only and dated here by ``created_at`` (when the entry was booked),
not by the event's ``occurred_at``: a late event books today and lands today, so
recomputing today and yesterday, plus a nightly pass over the last week, is exact.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from datetime import UTC, date, datetime
from decimal import Decimal

from celery import shared_task
from django.db import transaction
from django.db.models import Count, Sum
from django.db.models.functions import TruncDate

from billing.daily_revenue import DailyRevenue
from billing.models import Charge
from billing.money import to_cents
from marketplace.stats import RECENT_DAYS, advisory_lock, window

REVENUE_LOCK = 0x524556454E5545  # "REVENUE"


def revenue_sums(
    *, start: datetime, end: datetime
) -> dict[tuple[date, uuid.UUID, str, str], tuple[Decimal, int]]:
    """Net amount and entry count per (day, partner, fee type, currency) in [start, end)."""
    rows = (
        Charge.objects.filter(created_at__gte=start, created_at__lt=end)
        .order_by()
        .values("partner_id", "kind", "currency", d=TruncDate("created_at", tzinfo=UTC))
        .annotate(total=Sum("amount"), n=Count("id"))
    )
    sums: dict[tuple[date, uuid.UUID, str, str], tuple[Decimal, int]] = defaultdict(
        lambda: (Decimal("0"), 0)
    )
    for row in rows:
        # SQLite sums decimals as binary floats: back to cents (exact on PostgreSQL).
        total = to_cents(Decimal(str(row["total"] or 0)))
        sums[(row["d"], row["partner_id"], row["kind"], row["currency"])] = (total, row["n"])
    return sums


def rollup_revenue(*, days: int = RECENT_DAYS, now: datetime | None = None) -> int:
    """Replace the last ``days`` days' revenue rows by a fresh sum; returns rows written."""
    _, start, end = window(days=days, now=now)
    with transaction.atomic():
        advisory_lock(REVENUE_LOCK)
        sums = revenue_sums(start=start, end=end)
        DailyRevenue.objects.filter(day__gte=start.date(), day__lt=end.date()).delete()
        rows = [
            DailyRevenue(
                day=day,
                partner_id=partner,
                fee_type=kind,
                currency=currency,
                amount=total,
                entries=n,
            )
            for (day, partner, kind, currency), (total, n) in sums.items()
        ]
        DailyRevenue.objects.bulk_create(rows, batch_size=1000)
    return len(rows)


@shared_task(name="billing.stats.rollup_revenue_task")
def rollup_revenue_task(days: int = RECENT_DAYS) -> int:
    return rollup_revenue(days=days)
