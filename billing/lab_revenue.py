"""Revenue per referral for marketplace's strategy lab (found by name from
``marketplace.experiments.revenue``, since marketplace may not import billing)."""

from __future__ import annotations

import uuid
from collections.abc import Collection
from decimal import Decimal

from django.db.models import Sum

from billing.models import Charge

CHUNK = 900  # ids per query: within SQLite's bound-parameter limit


def net_revenue_by_referral(
    referral_ids: Collection[uuid.UUID], currency: str
) -> dict[uuid.UUID, Decimal]:
    """Net of the charge ledger (charges less credits, reversals and reprices) per referral
    in ``currency``; referrals with nothing booked in it are absent."""
    ids = list(referral_ids)
    net: dict[uuid.UUID, Decimal] = {}
    for start in range(0, len(ids), CHUNK):
        rows = (
            Charge.objects.filter(
                lead__referral_id__in=ids[start : start + CHUNK], currency=currency
            )
            .values("lead__referral_id")
            .annotate(net=Sum("amount"))
        )
        net.update({row["lead__referral_id"]: row["net"] for row in rows if row["net"] is not None})
    return net
