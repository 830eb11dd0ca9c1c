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
    """The floor of the band containing ``monthly_income`` (the lowest band for anything
    below it, e.g. a negative value)."""
    floor = INCOME_BAND_FLOORS[0]
    for candidate in INCOME_BAND_FLOORS:
        if monthly_income >= candidate:
            floor = candidate
    return floor


def income_band_label(income: Decimal) -> str:
    """The label of the band containing ``income``: total over any stored value, not only
    the band floors intake writes. Rows written by other paths (imports, fixtures, an older
    band table) hold values between floors, and a label is read on every lead list, lead
    detail and ping: an unknown value must never make those fail."""
    floor = income_band_floor(income)
    index = INCOME_BAND_FLOORS.index(floor)
    # Label from our own constant: the database hands the floor back as 5000.00.
    low = INCOME_BAND_FLOORS[index]
    if index + 1 == len(INCOME_BAND_FLOORS):
        return f"{low}+"
    return f"{low}-{INCOME_BAND_FLOORS[index + 1] - 1}"


def age_band_label(age: int) -> str:
    """The label of the band containing ``age``; outside every band, which side it is on
    (intake refuses both, but a stored age is shown, never guessed into a band)."""
    for low, high in AGE_BANDS:
        if low <= age <= high:
            return f"{low}-{high}"
    if age > AGE_BANDS[-1][1]:
        return f"over-{AGE_BANDS[-1][1]}"
    return f"under-{AGE_BANDS[0][0]}"


# Loan amount bands (in the referral's currency, CNY by default) for learning conversion
# rates per segment: first loans of a few thousand yuan, later loans 3,000-4,000, some
# over 10,000 (DOMAIN.md). Coarse on purpose: every band must gather evidence quickly.
AMOUNT_BAND_FLOORS = (Decimal(0), Decimal(3000), Decimal(10000), Decimal(30000))


def amount_band_label(amount: Decimal) -> str:
    """The label of the amount band containing ``amount`` ("0-2999", ..., "30000+"); total
    over any value (below the lowest floor: the lowest band)."""
    index = 0
    for position, floor in enumerate(AMOUNT_BAND_FLOORS):
        if amount >= floor:
            index = position
    low = AMOUNT_BAND_FLOORS[index]
    if index + 1 == len(AMOUNT_BAND_FLOORS):
        return f"{low}+"
    return f"{low}-{AMOUNT_BAND_FLOORS[index + 1] - 1}"


def segment_key(*, risk_tier: str, channel: str, amount: Decimal) -> str:
    """The learning segment of a referral: risk tier, channel and amount band (no personal
    data: the operator's grade, the channel and a coarse band of the loan asked for)."""
    return f"{risk_tier}|{channel}|{amount_band_label(amount)}"[:80]
