"""Daily revenue aggregates the dashboard reads (maintained by billing.stats).

Registered with the billing app by ``BillingConfig.import_models`` (billing.models is one
module being split into a package; this model moves in once it is one).
"""

from __future__ import annotations

from django.db import models

from billing.models import FeeKind
from partners.currencies import Currency
from partners.models import Partner


class DailyRevenue(models.Model):
    """The net of the charge ledger's entries booked on one UTC day (by the time each entry
    was written), per partner, fee type and currency: charges less credits, reversals and
    reprices. Money: Decimal to the cent, with its currency."""

    day = models.DateField()
    partner = models.ForeignKey(Partner, on_delete=models.CASCADE, related_name="+")
    fee_type = models.CharField(max_length=8, choices=FeeKind.choices)
    currency = models.CharField(max_length=3, choices=Currency.choices)
    amount = models.DecimalField(max_digits=15, decimal_places=2)  # net; may be negative
    entries = models.IntegerField(default=0)  # ledger entries summed

    class Meta:
        app_label = "billing"
        verbose_name = "daily revenue"
        verbose_name_plural = "daily revenue"
        constraints = [
            models.UniqueConstraint(
                fields=["day", "partner", "fee_type", "currency"],
                name="daily_revenue_one_row_per_segment",
            )
        ]

    def __str__(self) -> str:
        return f"{self.day} {self.fee_type} {self.currency} {self.amount}"
