"""Issuing a draft: its gapless number, due date and bill-to address, refused over an
unclean reconciliation unless an operator overrides it and says why (recorded with the
differences), and the partner's ``invoice.issued`` webhook.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone

from billing import credit
from billing.invoicing.figures import _next_number
from billing.models import Invoice, InvoiceSequence, InvoiceStatus, IssueOverride
from billing.periods import InvoicingError
from billing.reconcile import reconcile_invoice
from partners.models import Partner
from partners.webhook_delivery import enqueue

# An override of a failed reconciliation says why in at least this many characters.
MIN_OVERRIDE_REASON = 10


class IssueRefused(InvoicingError):
    """Reconciliation of the invoice's partner and months is not clean (R10)."""

    def __init__(self, invoice: Invoice, differences: list[str]) -> None:
        super().__init__(
            f"{invoice} not issued: reconciliation of its partner and months found "
            f"{len(differences)} difference(s)"
        )
        self.invoice = invoice
        self.differences = differences


@dataclass(frozen=True)
class Override:
    """Issue although reconciliation is not clean: who decides and why (recorded)."""

    reason: str
    user: Any = None  # the staff user deciding (admin)
    actor: str = ""  # who, when there is no user (command line)

    def who(self) -> str:
        name = self.actor.strip() or str(getattr(self.user, "get_username", lambda: "")())
        if not name:
            raise InvoicingError("an override names who decides it")
        return name[:150]

    def why(self) -> str:
        reason = " ".join(self.reason.split())
        if len(reason) < MIN_OVERRIDE_REASON:
            raise InvoicingError(
                f"say why the invoice is issued anyway (at least {MIN_OVERRIDE_REASON} characters)"
            )
        return reason[:500]


def _bill_to(partner: Partner) -> str:
    parts = [partner.legal_name or partner.name, partner.billing_address]
    if partner.licence_number:
        parts.append(f"Licence {partner.licence_number}")
    return "\n".join(p for p in parts if p)


def issue_invoice(*, invoice_id: uuid.UUID, override: Override | None = None) -> Invoice:
    """Give a draft its gapless number and due date; a no-op for one already issued.
    Refused (:class:`IssueRefused`, listing the differences) unless reconciliation of the
    invoice's partner and months is clean and no fee of them waits for an exchange rate,
    or an ``override`` says who issues it anyway and why (recorded as an
    ``IssueOverride`` with the differences). Partners get an ``invoice.issued`` webhook."""
    return _issue(invoice_id=invoice_id, override=override)[0]


def _issue(*, invoice_id: uuid.UUID, override: Override | None) -> tuple[Invoice, bool]:
    """The invoice, and whether this call issued it (False: it was issued already)."""
    from billing.statements import payment_terms_days

    who, why = (override.who(), override.why()) if override is not None else ("", "")
    with transaction.atomic():
        invoice = Invoice.objects.select_for_update().select_related("partner").get(pk=invoice_id)
        if invoice.status != InvoiceStatus.DRAFT:
            return invoice, False
        differences = reconcile_invoice(invoice).differences
        if differences and override is None:
            raise IssueRefused(invoice, differences)
        if differences:
            assert override is not None
            IssueOverride.objects.create(
                invoice=invoice,
                partner_id=invoice.partner_id,
                decided_by=override.user if getattr(override.user, "pk", None) else None,
                actor=who,
                reason=why,
                differences=differences,
            )
        now = timezone.now()
        invoice.number = f"INV-{now.year}-{_next_number(InvoiceSequence, now.year):06d}"
        invoice.status = InvoiceStatus.ISSUED
        invoice.issued_at = now
        invoice.due_date = now.date() + timedelta(days=payment_terms_days(invoice.partner_id))
        invoice.bill_to = _bill_to(invoice.partner)
        invoice.save(update_fields=["number", "status", "issued_at", "due_date", "bill_to"])
        enqueue(
            partner_id=invoice.partner_id,
            event_type="invoice.issued",
            data={
                "invoice_id": str(invoice.id),
                "number": invoice.number,
                "period": f"{invoice.period_start:%Y-%m}",
                "currency": invoice.currency,
                "total": str(invoice.total),
                "due_date": invoice.due_date.isoformat(),
            },
            dedupe_key=f"invoice.issued:{invoice.id}",
        )
        credit.evaluate_credit_limit(partner_id=invoice.partner_id)
        return invoice, True
