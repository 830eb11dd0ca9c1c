"""A partner's balance and exposure: the one definition, per partner and currency.

- ``issued``: totals of every invoice ever issued (void ones included: voiding issues a
  full credit note, which ``credited`` counts, so a void invoice nets to zero).
- ``credited``: totals of every credit note (corrections of issued invoices and voids).
- ``paid``: every payment received; ``unapplied`` is the part not allocated to an invoice.
- ``balance`` = issued - credited - paid: what the partner owes now (negative: in credit).
- ``drafts``: totals (VAT included) of draft invoices, made but not issued yet.
- ``uninvoiced``: ledger entries that no live invoice (draft or issued) bills and no credit
  note credits yet: charges of months not invoiced, corrections waiting for their credit
  note, entries of a voided invoice not replaced yet. ``uninvoiced_net`` is their sum;
  ``uninvoiced`` adds VAT as an invoice would: to_cents(net) + to_cents(to_cents(net) *
  VAT_RATE). Negative when pending credits outweigh new charges.
- ``exposure`` = balance + drafts + uninvoiced: what the partner owes and will owe once
  everything booked is invoiced; the credit limit is checked against it.

Every entry counts exactly once: an entry is on an invoice (its total is in ``issued`` or
``drafts``), on a credit note (in ``credited``), or in ``uninvoiced``; never two of them.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db.models import Exists, OuterRef, QuerySet, Sum

from billing.models import Charge, CreditNote, Invoice, InvoiceStatus, Payment, PaymentAllocation
from billing.money import ZERO, to_cents


@dataclass(frozen=True)
class Balance:
    partner_id: uuid.UUID
    currency: str
    issued: Decimal  # totals of issued invoices, void ones included
    credited: Decimal  # totals of credit notes
    paid: Decimal  # payments received
    unapplied: Decimal  # payments not allocated to an invoice
    balance: Decimal  # issued - credited - paid
    drafts: Decimal  # totals of draft invoices, VAT included
    uninvoiced_net: Decimal  # entries on no invoice and no credit note yet, before VAT
    uninvoiced: Decimal  # the same with VAT as an invoice computes it
    exposure: Decimal  # balance + drafts + uninvoiced


def _sum(queryset: QuerySet[Any], field: str) -> Decimal:
    total: Decimal | None = queryset.aggregate(s=Sum(field))["s"]
    return to_cents(total or ZERO)


def uninvoiced_entries(*, partner_id: uuid.UUID, currency: str) -> QuerySet[Charge]:
    """The partner's ledger entries in ``currency`` that no live (draft or issued, not
    void) invoice bills and no credit note credits."""
    billed_by = Invoice.objects.filter(
        partner_id=partner_id,
        currency=currency,
        first_period__lte=OuterRef("period"),
        period_start__gte=OuterRef("period"),
    ).exclude(status=InvoiceStatus.VOID)
    return Charge.objects.filter(
        partner_id=partner_id, currency=currency, credit_note__isnull=True
    ).exclude(Exists(billed_by))


def with_vat(net: Decimal) -> Decimal:
    """``net`` plus VAT as an invoice computes it (R9)."""
    subtotal = to_cents(net)
    return subtotal + to_cents(subtotal * Decimal(str(settings.VAT_RATE)))


def partner_balance(*, partner_id: uuid.UUID, currency: str) -> Balance:
    """The partner's balance, drafts, uninvoiced entries and exposure in ``currency``."""
    invoices = Invoice.objects.filter(partner_id=partner_id, currency=currency)
    issued = _sum(invoices.exclude(status=InvoiceStatus.DRAFT), "total")
    drafts = _sum(invoices.filter(status=InvoiceStatus.DRAFT), "total")
    credited = _sum(CreditNote.objects.filter(partner_id=partner_id, currency=currency), "total")
    payments = Payment.objects.filter(partner_id=partner_id, currency=currency)
    paid = _sum(payments, "amount")
    allocated = _sum(PaymentAllocation.objects.filter(payment__in=payments), "amount")
    net = _sum(uninvoiced_entries(partner_id=partner_id, currency=currency), "amount")
    uninvoiced = with_vat(net)
    balance = issued - credited - paid
    return Balance(
        partner_id=partner_id,
        currency=currency,
        issued=issued,
        credited=credited,
        paid=paid,
        unapplied=paid - allocated,
        balance=balance,
        drafts=drafts,
        uninvoiced_net=net,
        uninvoiced=uninvoiced,
        exposure=balance + drafts + uninvoiced,
    )


def currencies_in_use(*, partner_id: uuid.UUID) -> list[str]:
    """The currencies the partner has any ledger entry, invoice or payment in."""
    found = (
        set(Charge.objects.filter(partner_id=partner_id).values_list("currency", flat=True))
        | set(Invoice.objects.filter(partner_id=partner_id).values_list("currency", flat=True))
        | set(Payment.objects.filter(partner_id=partner_id).values_list("currency", flat=True))
    )
    return sorted(found)


__all__ = ["Balance", "currencies_in_use", "partner_balance", "uninvoiced_entries", "with_vat"]
