"""Monthly invoices per partner and currency.

An invoice for period P takes every not-yet-invoiced charge of the partner in that currency
that occurred before the end of P; a charge that arrives after its month was invoiced goes
on the next invoice, so nothing is ever billed twice or lost. One invoice per partner,
currency and period (unique constraint): rerunning, or running twice at once, is a no-op.
Drafts are issued with a gapless number per year (``INV-2026-000123``), taken from a row
locked for the rest of the transaction; issued invoices are never edited, only voided and
corrected by credit notes (issue 4).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from uuid import UUID

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Count, Sum
from django.utils import timezone

from billing.models import Charge, FeeKind, Invoice, InvoiceLine, InvoiceSequence, InvoiceStatus
from billing.money import ZERO, to_cents


class InvoicingError(ValueError):
    pass


@dataclass(frozen=True)
class Period:
    start: date

    @classmethod
    def parse(cls, text: str) -> Period:
        try:
            parsed = datetime.strptime(text, "%Y-%m").date()
        except ValueError:
            raise InvoicingError(f"period must look like YYYY-MM, got {text!r}") from None
        return cls(parsed)

    @property
    def end(self) -> date:
        year, month = divmod(self.start.month, 12)
        return date(self.start.year + year, month + 1, 1)

    @property
    def end_datetime(self) -> datetime:
        return datetime.combine(self.end, datetime.min.time(), tzinfo=UTC)

    def __str__(self) -> str:
        return f"{self.start:%Y-%m}"


def _lines_for(invoice: Invoice) -> list[InvoiceLine]:
    kinds = dict(FeeKind.choices)
    rows = (
        Charge.objects.filter(invoice=invoice)
        .values("product_id", "product__name", "kind", "entry_type")
        .annotate(quantity=Count("id"), amount=Sum("amount"))
        .order_by("product__name", "kind", "entry_type")
    )
    return [
        InvoiceLine(
            invoice=invoice,
            product_id=row["product_id"],
            kind=row["kind"],
            entry_type=row["entry_type"],
            description=f"{row['product__name']}: {kinds[row['kind']]}"
            + (" (returns)" if row["entry_type"] == "credit" else ""),
            quantity=row["quantity"],
            amount=to_cents(row["amount"]),
        )
        for row in rows
    ]


def create_invoice(*, partner_id: UUID, currency: str, period: Period) -> Invoice | None:
    """The draft invoice for one partner and period, or None if it exists or has nothing."""
    with transaction.atomic():
        pending = Charge.objects.filter(
            partner_id=partner_id,
            currency=currency,
            invoice__isnull=True,
            occurred_at__lt=period.end_datetime,
        )
        if not pending.exists():
            return None
        invoice = Invoice(
            partner_id=partner_id,
            currency=currency,
            period_start=period.start,
            subtotal=ZERO,
            tax_rate=settings.VAT_RATE,
            tax=ZERO,
            total=ZERO,
        )
        try:
            with transaction.atomic():
                invoice.save(force_insert=True)
        except IntegrityError:
            return None  # another run made it
        # Claim charges still unclaimed; a concurrent claim of the same rows is impossible
        # because the invoice row above is unique per partner, currency and period.
        pending.filter(invoice__isnull=True).update(invoice=invoice)
        lines = _lines_for(invoice)
        InvoiceLine.objects.bulk_create(lines)
        invoice.subtotal = to_cents(sum((line.amount for line in lines), ZERO))
        invoice.tax = to_cents(invoice.subtotal * invoice.tax_rate)
        invoice.total = invoice.subtotal + invoice.tax
        invoice.save(update_fields=["subtotal", "tax", "total"])
        return invoice


def generate_invoices(*, period: Period, issue: bool = False) -> list[Invoice]:
    """Draft (and optionally issue) every partner's invoice for a closed or current month."""
    if period.start > timezone.now().date():
        raise InvoicingError(f"period {period} is in the future")
    pairs = (
        Charge.objects.filter(invoice__isnull=True, occurred_at__lt=period.end_datetime)
        .values_list("partner_id", "currency")
        .distinct()
        .order_by("partner_id", "currency")
    )
    made = []
    for partner_id, currency in list(pairs):
        invoice = create_invoice(partner_id=partner_id, currency=currency, period=period)
        if invoice is not None:
            made.append(issue_invoice(invoice_id=invoice.id) if issue else invoice)
    return made


def issue_invoice(*, invoice_id: UUID) -> Invoice:
    """Give a draft its gapless number; a no-op for an invoice already issued."""
    with transaction.atomic():
        invoice = Invoice.objects.select_for_update().get(pk=invoice_id)
        if invoice.status != InvoiceStatus.DRAFT:
            return invoice
        now = timezone.now()
        sequence, _ = InvoiceSequence.objects.get_or_create(year=now.year)
        sequence = InvoiceSequence.objects.select_for_update().get(pk=sequence.pk)
        sequence.last_number += 1
        sequence.save(update_fields=["last_number"])
        invoice.number = f"INV-{now.year}-{sequence.last_number:06d}"
        invoice.status = InvoiceStatus.ISSUED
        invoice.issued_at = now
        invoice.save(update_fields=["number", "status", "issued_at"])
        return invoice


def previous_period(today: date) -> Period:
    first = today.replace(day=1)
    year, month = (first.year, first.month - 1) if first.month > 1 else (first.year - 1, 12)
    return Period(date(year, month, 1))
