"""Daily funnel aggregates the dashboard reads (maintained by marketplace.stats).

One row per UTC day and segment: (partner, product) for what happened to leads and pings,
or no partner for referrals (a referral is counted before any partner is chosen), times
the referral's channel, risk tier and mode. Counts only: no personal data.
"""

from __future__ import annotations

from django.db import models
from django.db.models import Q

from partners.models import Partner, Product


class DailyFunnel(models.Model):
    # Each figure is dated by when its row reached us (see marketplace.stats for why).
    day = models.DateField()
    partner = models.ForeignKey(
        Partner, null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    product = models.ForeignKey(
        Product, null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    channel = models.CharField(max_length=40)
    risk_tier = models.CharField(max_length=2)
    is_sandbox = models.BooleanField()
    referred = models.IntegerField(default=0)  # referrals received (partner is NULL)
    matched = models.IntegerField(default=0)  # leads created for the partner
    delivered = models.IntegerField(default=0)  # leads whose delivery completed
    # Outcome events received, net of the partner's reversals received the same day (so a
    # day can be negative when reversals outnumber that day's events of the type).
    accepted = models.IntegerField(default=0)
    approved = models.IntegerField(default=0)
    funded = models.IntegerField(default=0)
    returned = models.IntegerField(default=0)
    pings = models.IntegerField(default=0)
    ping_timeouts = models.IntegerField(default=0)
    ping_latency_ms_sum = models.BigIntegerField(default=0)  # mean = sum / pings
    delivery_failures = models.IntegerField(default=0)  # post attempts that did not succeed

    class Meta:
        verbose_name = "daily funnel"
        constraints = [
            models.UniqueConstraint(
                fields=["day", "partner", "product", "channel", "risk_tier", "is_sandbox"],
                condition=Q(partner__isnull=False),
                name="daily_funnel_one_row_per_product_segment",
            ),
            models.UniqueConstraint(
                fields=["day", "channel", "risk_tier", "is_sandbox"],
                condition=Q(partner__isnull=True),
                name="daily_funnel_one_referral_row_per_segment",
            ),
            models.CheckConstraint(
                condition=Q(partner__isnull=True, product__isnull=True)
                | Q(partner__isnull=False, product__isnull=False),
                name="daily_funnel_partner_with_product",
            ),
        ]
        indexes = [models.Index(fields=["day", "is_sandbox"], name="daily_funnel_day")]

    def __str__(self) -> str:
        return f"{self.day} {self.channel}/{self.risk_tier}"
