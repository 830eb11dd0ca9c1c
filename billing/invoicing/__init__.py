"""Monthly invoices and credit notes per partner and currency.

Design:

- Every ledger entry carries the billing month it belongs to (``Charge.period``, set on
  insert under the partner's billing lock, see ``billing.locks``). Invoicing month P for a
  partner takes that lock exclusively, bills every entry in the months after the last one
  invoiced up to P, and records P as invoiced: later entries of P go to the next month.
  An invoice *finds* its charges by (partner, currency, months); no ledger row is updated,
  so invoicing a million charges is a handful of indexed aggregates, not a million writes.
- One invoice per partner, currency and month (unique constraint) and the lock make a
  rerun, or two runs at once, a no-op.
- A return or reversal of a charge already on an issued invoice is not a negative line on
  a later invoice: it is a credit note against that invoice (``CN-YYYY-NNNNNN``), made
  when the month the correction falls in is invoiced. Corrections of charges not yet on
  an issued invoice simply net on the invoice that bills them.
- Drafts are issued with a gapless number per year (``INV-2026-000123``) from a sequence
  row locked for the rest of the transaction. Issued invoices are never edited (model
  guards and PostgreSQL triggers); voiding one issues a full credit note, and rerunning
  the month makes a replacement invoice for the same charges.

Modules: ``drafting`` (a partner's months into draft invoices and credit notes for
corrections), ``issuing`` (numbers, reconciliation, overrides), ``credit_notes`` (voiding,
payment status), ``runs`` (the monthly run over all partners), ``figures`` (totals and
gapless numbers both documents share).
"""

from __future__ import annotations

from billing.invoicing.credit_notes import refresh_payment_status, void_invoice
from billing.invoicing.drafting import EARLIEST, describe_line, invoice_partner, invoice_partners
from billing.invoicing.issuing import MIN_OVERRIDE_REASON, IssueRefused, Override, issue_invoice
from billing.invoicing.runs import (
    BATCH,
    InvoicingRun,
    Refusal,
    generate_invoices,
    invoice_month,
)
from billing.periods import InvoicingError, Period

__all__ = [
    "BATCH",
    "EARLIEST",
    "MIN_OVERRIDE_REASON",
    "InvoicingError",
    "InvoicingRun",
    "IssueRefused",
    "Override",
    "Period",
    "Refusal",
    "describe_line",
    "generate_invoices",
    "invoice_month",
    "invoice_partner",
    "invoice_partners",
    "issue_invoice",
    "refresh_payment_status",
    "void_invoice",
]
