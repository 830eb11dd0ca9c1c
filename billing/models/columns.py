"""Column and constraint helpers the billing models share: a money column (13 digits, 2
decimals) and the check that a document's total is its subtotal plus tax.
"""

from __future__ import annotations

from typing import Any

from django.db import models
from django.db.models import F
from django.db.models.functions import Round
from django.db.models.lookups import Exact


def _money(**kwargs: Any) -> models.DecimalField:
    return models.DecimalField(max_digits=13, decimal_places=2, **kwargs)


def _adds_up(prefix: str) -> models.CheckConstraint:
    # Compared to the cent: SQLite stores decimals as binary floats, where
    # 8.54 + 0.51 != 9.05; on PostgreSQL (exact numeric) this is plain equality.
    return models.CheckConstraint(
        condition=Exact(Round(F("total") - F("subtotal") - F("tax"), 2), 0),
        name=f"{prefix}_total_adds_up",
    )
