"""The currencies the platform accepts amounts in and bills in: one short explicit list (not
all of ISO 4217), at the lowest layer so that every app checks against the same one.

Every amount the platform receives carries one of these (a referral's loan, a partner's
bid, an approved amount, a funded principal, reported revenue); fees are booked in a fee
schedule's currency, converting with a dated exchange rate when they differ (billing).
"""

from __future__ import annotations

from django.db import models


class Currency(models.TextChoices):
    """ISO 4217 codes."""

    CNY = "CNY", "Chinese yuan"
    HKD = "HKD", "Hong Kong dollar"
    USD = "USD", "US dollar"
    EUR = "EUR", "Euro"


CURRENCIES: tuple[str, ...] = tuple(Currency.values)


def is_currency(value: object) -> bool:
    """Whether ``value`` is one of the supported codes, exactly (upper case)."""
    return isinstance(value, str) and value in CURRENCIES
