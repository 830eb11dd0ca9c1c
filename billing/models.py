"""Fee schedules, the append-only charge ledger and invoices.

Money is ``DecimalField(max_digits=13, decimal_places=2)`` plus a currency; every amount
is rounded once, by ``billing.money.to_cents`` (ROUND_HALF_UP to 0.01).
"""

from __future__ import annotations

import uuid

from django.db import models
from django.db.models import F, Q
from django.db.models.functions import Round
from django.db.models.lookups import Exact

from marketplace.models import Lead, LeadEvent
from partners.models import Partner, Product


class FeeSchedule(models.Model):
    """What a partner pays, optionally for one product, over a span of time."""

    partner = models.ForeignKey(Partner, on_delete=models.PROTECT, related_name="fee_schedules")
    # NULL: applies to all the partner's products without a schedule of their own.
    product = models.ForeignKey(
        Product, null=True, blank=True, on_delete=models.PROTECT, related_name="fee_schedules"
    )
    currency = models.CharField(max_length=3, default="CNY")
    # Per accepted lead (CPL).
    cpl = models.DecimalField(max_digits=13, decimal_places=2, default=0)
    # Per approved loan (CPA).
    cpa = models.DecimalField(max_digits=13, decimal_places=2, default=0)
    # Fraction of funded principal (CPF), 0.0300 = 3%, clamped to [cpf_min, cpf_max] per loan.
    cpf_rate = models.DecimalField(max_digits=6, decimal_places=4, default=0)
    cpf_min = models.DecimalField(max_digits=13, decimal_places=2, default=0)
    cpf_max = models.DecimalField(max_digits=13, decimal_places=2, null=True, blank=True)
    effective_from = models.DateTimeField()
    effective_to = models.DateTimeField(null=True, blank=True)  # exclusive; NULL: open-ended
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(cpl__gte=0)
                & Q(cpa__gte=0)
                & Q(cpf_rate__gte=0)
                & Q(cpf_rate__lte=1)
                & Q(cpf_min__gte=0),
                name="fee_schedule_non_negative",
            ),
            models.CheckConstraint(
                condition=Q(cpf_max__isnull=True) | Q(cpf_max__gte=F("cpf_min")),
                name="fee_schedule_cpf_bounds",
            ),
            models.CheckConstraint(
                condition=Q(effective_to__isnull=True) | Q(effective_to__gt=F("effective_from")),
                name="fee_schedule_span",
            ),
        ]

    def __str__(self) -> str:
        scope = self.product.name if self.product else "all products"
        return f"{self.partner.name} ({scope}) from {self.effective_from:%Y-%m-%d}"


class FeeKind(models.TextChoices):
    CPL = "cpl", "Per accepted lead"
    CPA = "cpa", "Per approval"
    CPF = "cpf", "Share of funded principal"


class EntryType(models.TextChoices):
    CHARGE = "charge", "Charge"
    CREDIT = "credit", "Credit (return)"


class Charge(models.Model):
    """One line of the append-only charge ledger. Corrections are new rows, never edits."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    partner = models.ForeignKey(Partner, on_delete=models.PROTECT, related_name="charges")
    lead = models.ForeignKey(Lead, on_delete=models.PROTECT, related_name="charges")
    product = models.ForeignKey(Product, on_delete=models.PROTECT, related_name="+")
    event = models.ForeignKey(LeadEvent, on_delete=models.PROTECT, related_name="charges")
    schedule = models.ForeignKey(FeeSchedule, on_delete=models.PROTECT, related_name="charges")
    kind = models.CharField(max_length=8, choices=FeeKind.choices)
    entry_type = models.CharField(max_length=8, choices=EntryType.choices)
    # Positive for charges, negative for credits; rounded to cents ROUND_HALF_UP.
    amount = models.DecimalField(max_digits=13, decimal_places=2)
    currency = models.CharField(max_length=3)
    occurred_at = models.DateTimeField(db_index=True)  # the event's time: prices and periods
    invoice = models.ForeignKey(
        "Invoice", null=True, blank=True, on_delete=models.PROTECT, related_name="charges"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            # Exactly once: one charge and at most one credit per lead and fee kind.
            models.UniqueConstraint(
                fields=["lead", "kind", "entry_type"], name="charge_once_per_lead_kind"
            ),
            models.CheckConstraint(
                condition=(Q(entry_type="charge") & Q(amount__gte=0))
                | (Q(entry_type="credit") & Q(amount__lte=0)),
                name="charge_sign_matches_type",
            ),
        ]
        indexes = [models.Index(fields=["partner", "currency", "invoice", "occurred_at"])]


class InvoiceStatus(models.TextChoices):
    DRAFT = "draft", "Draft"
    ISSUED = "issued", "Issued"
    PAID = "paid", "Paid"
    VOID = "void", "Void"


class Invoice(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    partner = models.ForeignKey(Partner, on_delete=models.PROTECT, related_name="invoices")
    currency = models.CharField(max_length=3)
    period_start = models.DateField()  # first day of the billed month
    status = models.CharField(
        max_length=8, choices=InvoiceStatus.choices, default=InvoiceStatus.DRAFT
    )
    # Gapless per year, e.g. INV-2026-000123; assigned when issued.
    number = models.CharField(max_length=20, unique=True, null=True, blank=True)
    subtotal = models.DecimalField(max_digits=13, decimal_places=2)  # sum of lines
    tax_rate = models.DecimalField(max_digits=5, decimal_places=4)  # VAT, 0.0600 = 6%
    tax = models.DecimalField(max_digits=13, decimal_places=2)  # to_cents(subtotal * rate)
    total = models.DecimalField(max_digits=13, decimal_places=2)  # subtotal + tax
    issued_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            # One invoice per partner, currency and month: concurrent runs make one.
            models.UniqueConstraint(
                fields=["partner", "currency", "period_start"],
                condition=~Q(status="void"),
                name="invoice_once_per_period",
            ),
            # Compared to the cent: SQLite stores decimals as binary floats, where
            # 8.54 + 0.51 != 9.05; on PostgreSQL (exact numeric) this is plain equality.
            models.CheckConstraint(
                condition=Exact(Round(F("total") - F("subtotal") - F("tax"), 2), 0),
                name="invoice_total_adds_up",
            ),
        ]
        ordering = ["-period_start", "partner__name"]

    def __str__(self) -> str:
        return self.number or f"Draft {self.partner.name} {self.period_start:%Y-%m}"


class InvoiceLine(models.Model):
    invoice = models.ForeignKey(Invoice, on_delete=models.PROTECT, related_name="lines")
    kind = models.CharField(max_length=8, choices=FeeKind.choices)
    entry_type = models.CharField(max_length=8, choices=EntryType.choices)
    product = models.ForeignKey(Product, on_delete=models.PROTECT, related_name="+")
    description = models.CharField(max_length=200)
    quantity = models.PositiveIntegerField()
    amount = models.DecimalField(max_digits=13, decimal_places=2)  # sum of its charges

    class Meta:
        ordering = ["product__name", "kind", "entry_type"]


class InvoiceSequence(models.Model):
    """Last number issued per year; locked while issuing so numbers stay gapless."""

    year = models.PositiveSmallIntegerField(primary_key=True)
    last_number = models.PositiveIntegerField(default=0)
