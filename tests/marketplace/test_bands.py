"""Anonymised bands: what partners and pings see instead of exact age and income."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from marketplace.bands import age_band_label, age_on, income_band_floor, income_band_label


@pytest.mark.parametrize(
    ("birth", "today", "age"),
    [
        (date(1990, 3, 7), date(2026, 3, 6), 35),
        (date(1990, 3, 7), date(2026, 3, 7), 36),
        (date(2000, 2, 29), date(2026, 2, 28), 25),
        (date(2000, 2, 29), date(2026, 3, 1), 26),
    ],
)
def test_age_on_counts_whole_years(birth: date, today: date, age: int) -> None:
    assert age_on(birth, today) == age


@pytest.mark.parametrize(
    ("income", "floor"),
    [
        ("0", "0"),
        ("2999.99", "0"),
        ("3000.00", "3000"),
        ("8500.00", "5000"),
        ("10000", "10000"),
        ("1000000", "50000"),
    ],
)
def test_income_band_floor(income: str, floor: str) -> None:
    assert income_band_floor(Decimal(income)) == Decimal(floor)


@pytest.mark.parametrize(
    ("floor", "label"),
    [
        # As stored in a DecimalField(decimal_places=2) and read back.
        (Decimal("0.00"), "0-2999"),
        (Decimal("5000.00"), "5000-9999"),
        (Decimal("50000.00"), "50000+"),
        (Decimal("5000"), "5000-9999"),
    ],
)
def test_income_band_label_does_not_depend_on_the_stored_scale(floor: Decimal, label: str) -> None:
    assert income_band_label(floor) == label


@pytest.mark.parametrize(
    ("age", "label"),
    [(17, "under-18"), (18, "18-24"), (24, "18-24"), (36, "35-44"), (90, "65-120")],
)
def test_age_band_label(age: int, label: str) -> None:
    assert age_band_label(age) == label
