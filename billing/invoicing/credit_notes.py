"""After issue: credit notes against an issued invoice (``CN-YYYY-NNNNNN``: corrections
of its charges, or voiding it in full) and the payment status its allocations and credit
notes add up to.
"""

from __future__ import annotations

import uuid

from django.db import transaction
from django.db.models import Sum
from django.utils import timezone

from billing import credit
from billing.invoicing.figures import _next_number, _totals
from billing.models import (
    CreditNote,
    CreditNoteKind,
    CreditNoteLine,
    CreditNoteSequence,
    Invoice,
    InvoiceStatus,
    PaymentAllocation,
)
from billing.money import ZERO
from billing.periods import InvoicingError
from partners.webhook_delivery import enqueue


def _issue_credit_note(
    *, invoice: Invoice, kind: str, reason: str, lines: list[CreditNoteLine]
) -> CreditNote:
    now = timezone.now()
    subtotal, tax, total = _totals(sum((line.amount for line in lines), ZERO), invoice.tax_rate)
    note = CreditNote.objects.create(
        partner_id=invoice.partner_id,
        invoice=invoice,
        kind=kind,
        currency=invoice.currency,
        number=f"CN-{now.year}-{_next_number(CreditNoteSequence, now.year):06d}",
        reason=reason[:200],
        subtotal=subtotal,
        tax_rate=invoice.tax_rate,
        tax=tax,
        total=total,
        issued_at=now,
    )
    for line in lines:
        line.credit_note = note
    CreditNoteLine.objects.bulk_create(lines)
    enqueue(
        partner_id=invoice.partner_id,
        event_type="credit_note.issued",
        data={
            "credit_note_id": str(note.id),
            "number": note.number,
            "invoice_number": invoice.number,
            "currency": note.currency,
            "total": str(note.total),
        },
        dedupe_key=f"credit_note.issued:{note.id}",
    )
    refresh_payment_status(invoice_id=invoice.id)
    return note


def void_invoice(*, invoice_id: uuid.UUID, reason: str) -> CreditNote:
    """Void an issued invoice by a full credit note; rerunning its month then makes a
    replacement for the same charges. Refused once paid or already corrected."""
    if not reason.strip():
        raise InvoicingError("say why the invoice is voided")
    with transaction.atomic():
        invoice = Invoice.objects.select_for_update().get(pk=invoice_id)
        if invoice.status == InvoiceStatus.DRAFT:
            raise InvoicingError("a draft is not voided: it has no number yet; issue or keep it")
        if invoice.status == InvoiceStatus.VOID:
            raise InvoicingError(f"{invoice.number} is void already")
        if invoice.allocations.exists():
            raise InvoicingError(f"{invoice.number} has payments allocated: it cannot be voided")
        if invoice.credit_notes.exists():
            raise InvoicingError(
                f"{invoice.number} has credit notes already: issue a further credit note instead"
            )
        lines = [
            CreditNoteLine(
                product_id=line.product_id,
                kind=line.kind,
                entry_type=line.entry_type,
                description=line.description,
                quantity=line.quantity,
                amount=line.amount,
            )
            for line in invoice.lines.all()
        ]
        note = _issue_credit_note(
            invoice=invoice, kind=CreditNoteKind.VOID, reason=f"Void: {reason}", lines=lines
        )
        Invoice.objects.filter(pk=invoice.pk).update(
            status=InvoiceStatus.VOID, voided_at=timezone.now(), void_reason=reason[:200]
        )
        credit.evaluate_credit_limit(partner_id=invoice.partner_id)
        return note


def refresh_payment_status(*, invoice_id: uuid.UUID) -> str:
    """Issued, partly paid or paid, derived from allocations and credit notes."""
    invoice = Invoice.objects.get(pk=invoice_id)
    if invoice.status in {InvoiceStatus.DRAFT, InvoiceStatus.VOID}:
        return invoice.status
    credited = invoice.credit_notes.aggregate(s=Sum("total"))["s"] or ZERO
    allocated = (
        PaymentAllocation.objects.filter(invoice=invoice).aggregate(s=Sum("amount"))["s"] or ZERO
    )
    open_amount = invoice.total - credited - allocated
    if open_amount <= 0:
        status = InvoiceStatus.PAID
    elif allocated > 0:
        status = InvoiceStatus.PARTLY_PAID
    else:
        status = InvoiceStatus.ISSUED
    if status != invoice.status:
        Invoice.objects.filter(pk=invoice.pk).exclude(status=InvoiceStatus.VOID).update(
            status=status
        )
    return status
