"""Payments received from partners and their allocation to invoices.

Recording is idempotent by the bank reference (unique per partner): importing the same
bank statement line twice records one payment. Allocation applies a payment to open
invoices of its currency, oldest due first unless finance names the invoices; sums are
checked under row locks (payment, then invoices in id order, so two allocations cannot
deadlock or both spend the same money). Invoice status follows from the allocations.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal

from django.db import IntegrityError, transaction
from django.db.models import Sum

from billing import credit
from billing.fees import FeeScheduleError, check_currency, parse_amount
from billing.invoicing import refresh_payment_status
from billing.models import Invoice, InvoiceStatus, Payment, PaymentAllocation
from billing.money import ZERO, to_cents
from billing.statements import open_invoices, with_open_amounts


class PaymentError(ValueError):
    pass


def record_payment(
    *,
    partner_id: uuid.UUID,
    currency: str,
    amount: object,
    received_at: datetime,
    bank_reference: str,
    note: str = "",
    allocate: bool = True,
) -> tuple[Payment, bool]:
    """(payment, created). The same bank reference again returns the stored payment, or
    refuses if it differs; new payments are allocated oldest-first unless told not to."""
    try:
        check_currency(currency)
        value = parse_amount(amount, field="amount")
    except FeeScheduleError as exc:
        raise PaymentError(str(exc)) from None
    if value <= 0:
        raise PaymentError("a payment amount must be positive")
    reference = bank_reference.strip()
    if not reference:
        raise PaymentError("a payment needs its bank reference")
    with transaction.atomic():
        try:
            with transaction.atomic():
                payment = Payment.objects.create(
                    partner_id=partner_id,
                    currency=currency,
                    amount=value,
                    received_at=received_at,
                    bank_reference=reference,
                    note=note[:200],
                )
        except IntegrityError:
            payment = Payment.objects.get(partner_id=partner_id, bank_reference=reference)
            if (payment.currency, payment.amount) != (currency, value):
                raise PaymentError(
                    f"bank reference {reference} was recorded already with "
                    f"{payment.currency} {payment.amount}"
                ) from None
            return payment, False
        if allocate:
            allocate_payment(payment_id=payment.id)
        else:
            credit.evaluate_credit_limit(partner_id=partner_id)
        return payment, True


def unallocated(payment: Payment) -> Decimal:
    used = payment.allocations.aggregate(s=Sum("amount"))["s"] or ZERO
    return to_cents(payment.amount - used)


def allocate_payment(
    *,
    payment_id: uuid.UUID,
    allocations: Sequence[tuple[uuid.UUID, object]] | None = None,
) -> list[PaymentAllocation]:
    """Apply what is left of a payment: to the named invoices and amounts, or else to the
    partner's open invoices oldest due first."""
    with transaction.atomic():
        payment = Payment.objects.select_for_update().get(pk=payment_id)
        left = unallocated(payment)
        targets: list[tuple[uuid.UUID, Decimal | None]]
        if allocations is None:
            targets = [
                (invoice.id, None)
                for invoice in open_invoices(
                    partner_id=payment.partner_id, currency=payment.currency
                )
            ]
        else:
            targets = [(invoice_id, _amount(value)) for invoice_id, value in allocations]
            asked = sum((v for _, v in targets if v is not None), ZERO)
            if asked > left:
                raise PaymentError(
                    f"only {payment.currency} {left} of this payment is left to allocate"
                )
        ids = sorted({invoice_id for invoice_id, _ in targets})
        locked = {
            i.id: i for i in Invoice.objects.select_for_update().filter(pk__in=ids).order_by("pk")
        }
        opened = dict(
            with_open_amounts(Invoice.objects.filter(pk__in=ids)).values_list("id", "open_amount")  # type: ignore[misc]
        )
        made = []
        for invoice_id, wanted in targets:
            invoice = locked.get(invoice_id)
            if invoice is None or invoice.partner_id != payment.partner_id:
                raise PaymentError(f"invoice {invoice_id} is not this partner's")
            if invoice.currency != payment.currency:
                raise PaymentError(
                    f"{invoice.number} is in {invoice.currency}, the payment in {payment.currency}"
                )
            if invoice.status not in {InvoiceStatus.ISSUED, InvoiceStatus.PARTLY_PAID}:
                raise PaymentError(
                    f"{invoice} is {invoice.get_status_display().lower()}: nothing to pay"
                )
            open_amount = to_cents(opened[invoice_id])
            amount = min(open_amount, left) if wanted is None else wanted
            if wanted is not None and wanted > open_amount:
                raise PaymentError(
                    f"{invoice.number} has only {invoice.currency} {open_amount} open"
                )
            if amount <= 0:
                continue
            made.append(
                PaymentAllocation.objects.create(payment=payment, invoice=invoice, amount=amount)
            )
            left -= amount
            refresh_payment_status(invoice_id=invoice.id)
            if left <= 0:
                break
        credit.evaluate_credit_limit(partner_id=payment.partner_id)
        return made


def _amount(value: object) -> Decimal:
    try:
        amount = parse_amount(value, field="amount")
    except FeeScheduleError as exc:
        raise PaymentError(str(exc)) from None
    if amount <= 0:
        raise PaymentError("an allocation must be positive")
    return amount
