"""Payments received from partners and their allocation to invoices."""

from __future__ import annotations

import uuid

from django.db import models
from django.db.models import Q

from billing.models.columns import _money
from billing.models.invoices import Invoice
from partners.currencies import Currency
from partners.models import Partner


class Payment(models.Model):
    """A bank transfer received from a partner. Recording the same bank reference again
    is a no-op (unique per partner)."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    partner = models.ForeignKey(Partner, on_delete=models.PROTECT, related_name="payments")
    currency = models.CharField(max_length=3, choices=Currency.choices)
    amount = _money()  # received, > 0
    received_at = models.DateTimeField()
    bank_reference = models.CharField(max_length=80)
    note = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-received_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["partner", "bank_reference"], name="payment_once_per_reference"
            ),
            models.CheckConstraint(condition=Q(amount__gt=0), name="payment_positive"),
        ]

    def __str__(self) -> str:
        return f"{self.bank_reference} {self.currency} {self.amount}"


class PaymentAllocation(models.Model):
    """Part of a payment applied to one invoice; sums are checked under row locks."""

    payment = models.ForeignKey(Payment, on_delete=models.PROTECT, related_name="allocations")
    invoice = models.ForeignKey(Invoice, on_delete=models.PROTECT, related_name="allocations")
    amount = _money()  # applied, > 0
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(amount__gt=0), name="allocation_positive")
        ]

    def __str__(self) -> str:
        return f"{self.amount} applied"
