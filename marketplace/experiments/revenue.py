"""Revenue per referral for the lab's results, from billing's charge ledger.

Marketplace sits below billing (``lint-imports``), so billing's function is found by
name at run time, the way ``marketplace.urls`` includes billing's API: marketplace never
imports billing's code. Without billing installed the results show no revenue.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Collection
from decimal import Decimal

from django.utils.module_loading import import_string

RevenueSource = Callable[[Collection[uuid.UUID], str], dict[uuid.UUID, Decimal]]

BILLING_REVENUE = "billing.lab_revenue.net_revenue_by_referral"


def revenue_source() -> RevenueSource | None:
    try:
        source: RevenueSource = import_string(BILLING_REVENUE)
    except ImportError:
        return None
    return source
