"""Fee schedules, the append-only charge ledger, invoices, credit notes and payments, one
module per concern.

Money is ``DecimalField(max_digits=13, decimal_places=2)`` plus a currency; every amount
is rounded once, by ``billing.money.to_cents`` (ROUND_HALF_UP to 0.01). State changes live
in the service modules (``fees``, ``charging``, ``returns``, ``invoicing``, ``payments``),
never in ``save()``; the models only guard what must never happen (editing an issued
invoice) and the database enforces signs and exactly-once by constraints.
"""

from __future__ import annotations

from billing.models.charges import (
    CORRECTIONS,
    Charge,
    EntryType,
    FeeKind,
    PendingFee,
    ReturnReason,
    ReturnReview,
    ReviewStatus,
)
from billing.models.credit_notes import (
    CreditNote,
    CreditNoteKind,
    CreditNoteLine,
    CreditNoteSequence,
)
from billing.models.fees import ExchangeRate, FeeSchedule, FeeTier
from billing.models.invoice_runs import RUNNING_STAGES, InvoiceRun, InvoiceRunStage
from billing.models.invoices import (
    MUTABLE_AFTER_ISSUE,
    Invoice,
    InvoiceLine,
    InvoiceLineQuerySet,
    InvoiceQuerySet,
    InvoiceSequence,
    InvoiceStatus,
    IssuedInvoiceError,
    IssueOverride,
    PartnerBillingProfile,
)
from billing.models.lab_figures import ExperimentFigures
from billing.models.payments import Payment, PaymentAllocation
from partners.currencies import Currency as Currency  # we bill in the ones we accept

__all__ = [
    "CORRECTIONS",
    "MUTABLE_AFTER_ISSUE",
    "RUNNING_STAGES",
    "Charge",
    "CreditNote",
    "CreditNoteKind",
    "CreditNoteLine",
    "CreditNoteSequence",
    "Currency",
    "EntryType",
    "ExchangeRate",
    "ExperimentFigures",
    "FeeKind",
    "FeeSchedule",
    "FeeTier",
    "Invoice",
    "InvoiceLine",
    "InvoiceLineQuerySet",
    "InvoiceQuerySet",
    "InvoiceRun",
    "InvoiceRunStage",
    "InvoiceSequence",
    "InvoiceStatus",
    "IssueOverride",
    "IssuedInvoiceError",
    "PartnerBillingProfile",
    "Payment",
    "PaymentAllocation",
    "PendingFee",
    "ReturnReason",
    "ReturnReview",
    "ReviewStatus",
]
