"""Partner statements: what each invoice still owes, the balance and its aging.

An invoice's open amount is its total less its credit notes and the payments allocated to
it (a void invoice is credited in full, so it owes nothing). The balance, drafts,
uninvoiced entries and exposure come from ``billing.balances.partner_balance`` (the one
definition): everything issued less everything credited and paid, so unapplied payments
and credit notes beyond an invoice's total lower it too. Aging buckets count days past
the due date.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal

from django.db.models import DecimalField, OuterRef, QuerySet, Subquery, Sum, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from billing.balances import partner_balance
from billing.models import (
    CreditNote,
    Invoice,
    InvoiceStatus,
    PartnerBillingProfile,
    PaymentAllocation,
)
from billing.money import ZERO, to_cents

BUCKETS = ["current", "0-30", "31-60", "61-90", "90+"]
MONEY = DecimalField(max_digits=13, decimal_places=2)


def with_open_amounts(invoices: QuerySet[Invoice]) -> QuerySet[Invoice]:
    """Annotate ``credited``, ``allocated`` and ``open_amount`` on each invoice."""
    credited = (
        CreditNote.objects.filter(invoice=OuterRef("pk"))
        .order_by()
        .values("invoice")
        .annotate(s=Sum("total"))
        .values("s")
    )
    allocated = (
        PaymentAllocation.objects.filter(invoice=OuterRef("pk"))
        .order_by()
        .values("invoice")
        .annotate(s=Sum("amount"))
        .values("s")
    )
    zero = Value(ZERO, output_field=MONEY)
    return invoices.annotate(
        credited=Coalesce(Subquery(credited, output_field=MONEY), zero),
        allocated=Coalesce(Subquery(allocated, output_field=MONEY), zero),
    ).annotate(
        open_amount=Coalesce("total", zero)
        - Coalesce("credited", zero)
        - Coalesce("allocated", zero)
    )


def open_invoices(*, partner_id: uuid.UUID, currency: str) -> QuerySet[Invoice]:
    """Issued, unpaid (or partly paid) invoices, oldest due first."""
    return (
        with_open_amounts(
            Invoice.objects.filter(
                partner_id=partner_id,
                currency=currency,
                status__in=[InvoiceStatus.ISSUED, InvoiceStatus.PARTLY_PAID],
            )
        )
        .filter(open_amount__gt=0)  # type: ignore[misc]
        .order_by("due_date", "issued_at", "number")
    )


def payment_terms_days(partner_id: uuid.UUID) -> int:
    profile = PartnerBillingProfile.objects.filter(partner_id=partner_id).first()
    return profile.payment_terms_days if profile else 30


@dataclass
class OpenItem:
    invoice_id: uuid.UUID
    number: str
    issued_at: date
    due_date: date
    total: Decimal
    credited: Decimal
    allocated: Decimal
    open_amount: Decimal
    days_overdue: int
    bucket: str


@dataclass
class Statement:
    partner_id: uuid.UUID
    currency: str
    as_of: date
    invoiced: Decimal  # total of every issued invoice (void ones included)
    credited: Decimal  # total of every credit note
    paid: Decimal  # every payment received
    unapplied: Decimal  # payments not allocated to an invoice
    balance: Decimal  # invoiced - credited - paid: what the partner owes now
    drafts: Decimal  # draft invoices' totals (VAT included), not issued yet
    uninvoiced: Decimal  # entries on no invoice or credit note yet, VAT included
    exposure: Decimal  # balance + drafts + uninvoiced (the credit limit's measure)
    aging: dict[str, Decimal] = field(default_factory=dict)
    items: list[OpenItem] = field(default_factory=list)


def bucket_for(days_overdue: int) -> str:
    if days_overdue < 0:
        return "current"
    if days_overdue <= 30:
        return "0-30"
    if days_overdue <= 60:
        return "31-60"
    if days_overdue <= 90:
        return "61-90"
    return "90+"


def statement(*, partner_id: uuid.UUID, currency: str, as_of: date | None = None) -> Statement:
    """The partner's balance (``billing.balances.partner_balance``, the one definition)
    with its open invoices aged by due date at ``as_of`` (default today)."""
    as_of = as_of or timezone.now().date()
    owed = partner_balance(partner_id=partner_id, currency=currency)
    result = Statement(
        partner_id=partner_id,
        currency=currency,
        as_of=as_of,
        invoiced=owed.issued,
        credited=owed.credited,
        paid=owed.paid,
        unapplied=owed.unapplied,
        balance=owed.balance,
        drafts=owed.drafts,
        uninvoiced=owed.uninvoiced,
        exposure=owed.exposure,
        aging=dict.fromkeys(BUCKETS, ZERO),
    )
    for invoice in open_invoices(partner_id=partner_id, currency=currency):
        open_amount: Decimal = invoice.open_amount  # type: ignore[attr-defined]
        assert invoice.issued_at is not None
        due = invoice.due_date or (invoice.issued_at.date() + timedelta(days=30))
        overdue = (as_of - due).days
        bucket = bucket_for(overdue)
        result.aging[bucket] += open_amount
        result.items.append(
            OpenItem(
                invoice_id=invoice.id,
                number=invoice.number or "",
                issued_at=invoice.issued_at.date(),
                due_date=due,
                total=invoice.total,
                credited=invoice.credited,  # type: ignore[attr-defined]
                allocated=invoice.allocated,  # type: ignore[attr-defined]
                open_amount=to_cents(open_amount),
                days_overdue=max(overdue, 0),
                bucket=bucket,
            )
        )
    result.aging = {name: to_cents(value) for name, value in result.aging.items()}
    return result
