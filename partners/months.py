"""UTC calendar months: the one place month arithmetic lives.

Pure date functions, no models, so every app can use them (partners is the lowest layer).
A month is named by its first day (a ``date``): billing's ``Charge.period``, a product's
monthly cap and budget, a revenue event's ``period`` ("YYYY-MM") all count UTC months.
"""

from __future__ import annotations

from datetime import UTC, date, datetime


def month_of(at: datetime) -> date:
    """The first day of the UTC month ``at`` falls in."""
    return at.astimezone(UTC).date().replace(day=1)


def month_label(at: datetime) -> str:
    """The UTC month ``at`` falls in, as "YYYY-MM"."""
    return f"{month_of(at):%Y-%m}"


def next_month(month: date) -> date:
    """The first day of the month after the one ``month`` is in."""
    return date(month.year + month.month // 12, month.month % 12 + 1, 1)


def previous_month(month: date) -> date:
    """The first day of the month before the one ``month`` is in."""
    first = month.replace(day=1)
    return date(first.year - 1, 12, 1) if first.month == 1 else date(first.year, first.month - 1, 1)


def month_start(month: date) -> datetime:
    """Midnight UTC on the first day of ``month``."""
    return datetime(month.year, month.month, 1, tzinfo=UTC)


def month_bounds(at: datetime) -> tuple[datetime, datetime]:
    """[start, end) of the UTC month ``at`` falls in."""
    month = month_of(at)
    return month_start(month), month_start(next_month(month))
