"""Cap counters: how much of each volume cap and monthly budget this period's awards have
taken, counted by compare-and-set (``marketplace.caps``)."""

from __future__ import annotations

from decimal import Decimal

from django.db import models
from django.db.models import Q

from marketplace.models.leads import Lead


class CapKind(models.TextChoices):
    DAY = "day", "Leads of a product in a UTC day"
    MONTH = "month", "Leads of a product in a UTC month"
    # Money the month's awards reserved against a budget (a product's or its partner's),
    # in the budget currency: the CPL or bid price of each lead, until released.
    RESERVED = "reserved", "Reserved against a monthly budget"
    # The month's charges a reservation does not stand for (billing writes it after every
    # charge: ``billing.budgets``); awards read it, never lock it.
    CHARGED = "charged", "Charged beyond the reservations"


class CapScope(models.TextChoices):
    PRODUCT = "product", "Product"
    PARTNER = "partner", "Partner"


class CapCounter(models.Model):
    """One counter: ``used`` of one cap of one product or partner in one period (a UTC day
    or the first day of a UTC month), per mode. Lead counts are whole numbers in ``used``;
    money is in the budget currency. Only ever changed by ``UPDATE ... SET used = used +
    x`` (``marketplace.caps``): the row is the lock and the count in one."""

    id = models.BigAutoField(primary_key=True)
    scope = models.CharField(max_length=8, choices=CapScope.choices)
    # The product's or partner's id, without a foreign key: inserting a counter must not
    # lock (for key share) the product or partner row the catalogue and billing lock.
    owner_id = models.UUIDField()
    kind = models.CharField(max_length=8, choices=CapKind.choices)
    period = models.DateField()
    is_sandbox = models.BooleanField(default=False)
    used = models.DecimalField(max_digits=15, decimal_places=2, default=Decimal("0.00"))

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["scope", "owner_id", "kind", "period", "is_sandbox"],
                name="cap_counter_one_per_period",
            ),
            # Awards and releases never take a counter below zero (charges net of credits
            # may be, so not the charged kind).
            models.CheckConstraint(
                condition=Q(kind="charged") | Q(used__gte=0), name="cap_counter_not_negative"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.scope} {self.owner_id} {self.kind} {self.period}: {self.used}"


class CapReservation(models.Model):
    """What one awarded lead took from the counters, so that a lead whose award did not go
    through (post rejected or failed for good, refused by consent) gives back exactly
    that, once (``released_at`` set by compare-and-set)."""

    lead = models.OneToOneField(
        Lead, primary_key=True, on_delete=models.CASCADE, related_name="cap_reservation"
    )
    product_id = models.UUIDField()
    partner_id = models.UUIDField()
    is_sandbox = models.BooleanField(default=False)
    day = models.DateField(null=True, blank=True)  # the day counter it counts in, if capped
    month = models.DateField(null=True, blank=True)  # the month counter, if capped
    # Reserved against the product's and the partner's budget (budget currency), in
    # ``budget_month``; NULL: that budget was not concerned.
    budget_month = models.DateField(null=True, blank=True)
    product_amount = models.DecimalField(max_digits=13, decimal_places=2, null=True, blank=True)
    partner_amount = models.DecimalField(max_digits=13, decimal_places=2, null=True, blank=True)
    created_at = models.DateTimeField()
    released_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=(Q(product_amount__isnull=True) | Q(product_amount__gte=0))
                & (Q(partner_amount__isnull=True) | Q(partner_amount__gte=0)),
                name="cap_reservation_amounts_not_negative",
            )
        ]
        indexes = [
            # Billing's question: which of this month's CPL charges a reservation stands for.
            models.Index(fields=["partner_id", "budget_month"], name="cap_resv_partner_month"),
        ]

    def __str__(self) -> str:
        return f"caps of lead {self.lead_id}"


__all__ = ["CapCounter", "CapKind", "CapReservation", "CapScope"]
