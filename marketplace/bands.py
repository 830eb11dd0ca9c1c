"""Anonymised bands: what routing and pings may know instead of exact personal values."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

INCOME_BAND_FLOORS = (
    Decimal(0),
    Decimal(3000),
    Decimal(5000),
    Decimal(10000),
    Decimal(20000),
    Decimal(50000),
)
AGE_BANDS = ((18, 24), (25, 34), (35, 44), (45, 54), (55, 64), (65, 120))


def age_on(birth_date: date, today: date) -> int:
    years = today.year - birth_date.year
    if (today.month, today.day) < (birth_date.month, birth_date.day):
        years -= 1
    return years


def income_band_floor(monthly_income: Decimal) -> Decimal:
    floor = INCOME_BAND_FLOORS[0]
    for candidate in INCOME_BAND_FLOORS:
        if monthly_income >= candidate:
            floor = candidate
    return floor


def income_band_label(floor: Decimal) -> str:
    index = INCOME_BAND_FLOORS.index(floor)
    # Label from our own constant: the database hands the floor back as 5000.00.
    low = INCOME_BAND_FLOORS[index]
    if index + 1 == len(INCOME_BAND_FLOORS):
        return f"{low}+"
    return f"{low}-{INCOME_BAND_FLOORS[index + 1] - 1}"


def age_band_label(age: int) -> str:
    for low, high in AGE_BANDS:
        if low <= age <= high:
            return f"{low}-{high}"
    return "under-18"
