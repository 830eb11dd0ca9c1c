"""Month arithmetic, as plain functions (no database)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

from billing import periods
from partners import months


def test_the_month_of_an_instant_is_its_utc_month() -> None:
    # 00:30 on 1 March in UTC+8 is still February in UTC.
    at = datetime(2026, 3, 1, 0, 30, tzinfo=timezone(timedelta(hours=8)))
    assert months.month_of(at) == date(2026, 2, 1)
    assert months.month_label(at) == "2026-02"


def test_next_and_previous_month_cross_the_year() -> None:
    assert months.next_month(date(2026, 12, 1)) == date(2027, 1, 1)
    assert months.next_month(date(2026, 1, 31)) == date(2026, 2, 1)
    assert months.previous_month(date(2026, 1, 15)) == date(2025, 12, 1)
    assert months.previous_month(date(2026, 3, 31)) == date(2026, 2, 1)


def test_month_bounds_are_utc_midnights_half_open() -> None:
    start, end = months.month_bounds(datetime(2026, 12, 31, 23, 59, tzinfo=UTC))
    assert (start, end) == (datetime(2026, 12, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC))
    assert months.month_start(date(2026, 2, 1)) == start.replace(year=2026, month=2)


def test_billing_periods_uses_the_same_functions() -> None:
    for name in ("month_of", "next_month", "previous_month", "month_start", "month_bounds"):
        assert getattr(periods, name) is getattr(months, name)
