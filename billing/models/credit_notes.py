"""Credit notes: a correction of an issued invoice, numbered in their own sequence, with
their lines.
"""

from __future__ import annotations

import uuid

from django.db import models

from billing.models.charges import EntryType, FeeKind
from billing.models.columns import _adds_up, _money
from billing.models.invoices import Invoice
from partners.currencies import Currency
from partners.models import Partner, Product


class CreditNoteSequence(models.Model):
    """Last credit-note number per year (CN-YYYY-NNNNNN), gapless like invoices."""

    year = models.PositiveSmallIntegerField(primary_key=True)
    last_number = models.PositiveIntegerField(default=0)


class CreditNoteKind(models.TextChoices):
    VOID = "void", "Invoice voided in full"
    CORRECTIONS = "corrections", "Returns and reversals of invoiced charges"


class CreditNote(models.Model):
    """A correction of an issued invoice; issued (numbered) when made, never edited.
    Amounts are what the partner is credited: positive reduces what it owes."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    partner = models.ForeignKey(Partner, on_delete=models.PROTECT, related_name="credit_notes")
    invoice = models.ForeignKey(Invoice, on_delete=models.PROTECT, related_name="credit_notes")
    kind = models.CharField(max_length=12, choices=CreditNoteKind.choices)
    currency = models.CharField(max_length=3, choices=Currency.choices)
    number = models.CharField(max_length=20, unique=True)  # CN-2026-000001, gapless per year
    reason = models.CharField(max_length=200)
    subtotal = _money()  # sum of lines, credited
    tax_rate = models.DecimalField(max_digits=5, decimal_places=4)  # the invoice's VAT rate
    tax = _money()  # to_cents(subtotal * rate)
    total = _money()  # subtotal + tax, credited
    issued_at = models.DateTimeField()

    class Meta:
        constraints = [_adds_up("credit_note")]
        ordering = ["-issued_at"]

    def __str__(self) -> str:
        return self.number


class CreditNoteLine(models.Model):
    credit_note = models.ForeignKey(CreditNote, on_delete=models.PROTECT, related_name="lines")
    kind = models.CharField(max_length=8, choices=FeeKind.choices)
    entry_type = models.CharField(max_length=8, choices=EntryType.choices)
    product = models.ForeignKey(Product, on_delete=models.PROTECT, related_name="+")
    description = models.CharField(max_length=200)
    quantity = models.PositiveIntegerField()
    amount = _money()  # credited: positive reduces what the partner owes

    class Meta:
        ordering = ["product__name", "kind", "entry_type"]

    def __str__(self) -> str:
        return self.description
