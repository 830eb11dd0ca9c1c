"""Invoices: a partner's billing profile, the invoice and its lines (frozen once issued:
only payment status and voiding change), the gap-free numbering, and the record of an
invoice issued over an unclean reconciliation.
"""

from __future__ import annotations

import uuid
from typing import Any

from django.conf import settings
from django.db import models
from django.db.models import Q

from billing.models.charges import EntryType, FeeKind
from billing.models.columns import _adds_up, _money
from partners.currencies import Currency
from partners.models import Partner, Product


class PartnerBillingProfile(models.Model):
    """Per-partner billing terms; a partner without one gets the settings' defaults."""

    partner = models.OneToOneField(
        Partner, primary_key=True, on_delete=models.CASCADE, related_name="billing_profile"
    )
    # Returns above this share of the partner's leads over 30 days wait for approval;
    # NULL: settings.RETURN_RATE_CAP (0.15).
    return_rate_cap = models.DecimalField(max_digits=5, decimal_places=4, null=True, blank=True)
    # Routing pauses while outstanding (open invoices + uninvoiced charges) exceeds it;
    # NULL: no limit.
    credit_limit = _money(null=True, blank=True)
    credit_limit_currency = models.CharField(
        max_length=3, choices=Currency.choices, default=Currency.CNY
    )
    # Due date = issue date + this many days.
    payment_terms_days = models.PositiveSmallIntegerField(default=30)
    # The last billing month invoiced; later charges of earlier months go to the next one.
    # This row is the partner's billing lock: charging shares it, invoicing holds it.
    invoiced_through = models.DateField(null=True, blank=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=(Q(return_rate_cap__isnull=True) | Q(return_rate_cap__gte=0))
                & (Q(credit_limit__isnull=True) | Q(credit_limit__gte=0)),
                name="billing_profile_non_negative",
            )
        ]

    def __str__(self) -> str:
        return f"Billing terms of {self.partner}"


class InvoiceStatus(models.TextChoices):
    DRAFT = "draft", "Draft"
    ISSUED = "issued", "Issued"
    PARTLY_PAID = "partly_paid", "Partly paid"
    PAID = "paid", "Paid"
    VOID = "void", "Void"


class IssuedInvoiceError(Exception):
    """An attempt to edit or delete an invoice (or its lines) after it was issued."""


# What may still change on an issued invoice: its payment status and voiding.
MUTABLE_AFTER_ISSUE = {"status", "voided_at", "void_reason"}


class InvoiceQuerySet(models.QuerySet["Invoice"]):
    def update(self, **kwargs: Any) -> int:
        if set(kwargs) - MUTABLE_AFTER_ISSUE and self.exclude(status=InvoiceStatus.DRAFT).exists():
            raise IssuedInvoiceError("an issued invoice cannot be edited: issue a credit note")
        return super().update(**kwargs)

    def delete(self) -> tuple[int, dict[str, int]]:
        if self.exclude(status=InvoiceStatus.DRAFT).exists():
            raise IssuedInvoiceError("an issued invoice cannot be deleted: void it")
        return super().delete()


class Invoice(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    partner = models.ForeignKey(Partner, on_delete=models.PROTECT, related_name="invoices")
    currency = models.CharField(max_length=3, choices=Currency.choices)
    period_start = models.DateField()  # first day of the billed month
    # Earliest billing month it covers (earlier months left open are billed with it):
    # its charges are the partner's in this currency with first_period <= period <= start.
    first_period = models.DateField()
    status = models.CharField(
        max_length=12, choices=InvoiceStatus.choices, default=InvoiceStatus.DRAFT
    )
    # Gapless per year, e.g. INV-2026-000123; assigned when issued.
    number = models.CharField(max_length=20, unique=True, null=True, blank=True)
    subtotal = _money()  # sum of lines
    tax_rate = models.DecimalField(max_digits=5, decimal_places=4)  # VAT, 0.0600 = 6%
    tax = _money()  # to_cents(subtotal * rate)
    total = _money()  # subtotal + tax
    # The partner's legal name and address as they were when issued (the document is fixed).
    bill_to = models.TextField(blank=True)
    issued_at = models.DateTimeField(null=True, blank=True)
    due_date = models.DateField(null=True, blank=True)  # issued + payment terms
    voided_at = models.DateTimeField(null=True, blank=True)
    void_reason = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = InvoiceQuerySet.as_manager()

    class Meta:
        constraints = [
            # One invoice per partner, currency and month: concurrent runs make one.
            models.UniqueConstraint(
                fields=["partner", "currency", "period_start"],
                condition=~Q(status="void"),
                name="invoice_once_per_period",
            ),
            _adds_up("invoice"),
            models.CheckConstraint(
                condition=Q(status="draft")
                | (Q(number__isnull=False) & Q(issued_at__isnull=False)),
                name="invoice_issued_has_number",
            ),
        ]
        ordering = ["-period_start", "partner__name"]

    def __str__(self) -> str:
        return self.number or f"Draft {self.partner.name} {self.period_start:%Y-%m}"

    def delete(self, *args: Any, **kwargs: Any) -> tuple[int, dict[str, int]]:
        if self.status != InvoiceStatus.DRAFT:
            raise IssuedInvoiceError("an issued invoice cannot be deleted: void it")
        return super().delete(*args, **kwargs)


class InvoiceLineQuerySet(models.QuerySet["InvoiceLine"]):
    def _guard(self) -> None:
        if self.exclude(invoice__status=InvoiceStatus.DRAFT).exists():
            raise IssuedInvoiceError("lines of an issued invoice cannot change")

    def update(self, **kwargs: Any) -> int:
        self._guard()
        return super().update(**kwargs)

    def delete(self) -> tuple[int, dict[str, int]]:
        self._guard()
        return super().delete()


class InvoiceLine(models.Model):
    invoice = models.ForeignKey(Invoice, on_delete=models.PROTECT, related_name="lines")
    kind = models.CharField(max_length=8, choices=FeeKind.choices)
    entry_type = models.CharField(max_length=8, choices=EntryType.choices)
    product = models.ForeignKey(Product, on_delete=models.PROTECT, related_name="+")
    description = models.CharField(max_length=200)
    quantity = models.PositiveIntegerField()
    amount = _money()  # sum of its charges (negative for returns and reversals)

    objects = InvoiceLineQuerySet.as_manager()

    class Meta:
        ordering = ["product__name", "kind", "entry_type"]

    def __str__(self) -> str:
        return self.description


class InvoiceSequence(models.Model):
    """Last invoice number issued per year; locked while issuing so numbers stay gapless."""

    year = models.PositiveSmallIntegerField(primary_key=True)
    last_number = models.PositiveIntegerField(default=0)


class IssueOverride(models.Model):
    """An invoice issued although reconciliation of its partner and months was not clean
    (``billing.invoicing.issue_invoice`` with an override): who decided, when, why, and the
    differences as they were listed then. Never edited."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    invoice = models.OneToOneField(Invoice, on_delete=models.PROTECT, related_name="issue_override")
    partner = models.ForeignKey(Partner, on_delete=models.PROTECT, related_name="+")
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    # The acting user's username, or the operator named on the command line.
    actor = models.CharField(max_length=150)
    reason = models.CharField(max_length=500)
    differences = models.JSONField(default=list)  # the refusal's list, as shown
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(
                condition=~Q(actor="") & ~Q(reason=""), name="issue_override_who_and_why"
            )
        ]

    def __str__(self) -> str:
        return f"Override of {self.invoice}"
