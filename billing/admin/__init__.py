"""Finance's admin: thin, every change goes through a billing service.

``fees`` (fee schedules, exchange rates), ``ledger`` (charges, pending fees, return
reviews), ``invoices`` (invoices, issue overrides, credit notes, billing profiles) and
``payments`` (payments and their allocation); importing this package registers them all,
and the Partner and Product admins billing extends (``billing.partner_admin``).
"""

from __future__ import annotations

from billing import partner_admin  # noqa: F401  (registers the Partner and Product admins)
from billing.admin.fees import (
    FEE_FIELDS,
    ExchangeRateAdmin,
    ExchangeRateForm,
    FeeScheduleAdmin,
    FeeScheduleForm,
    FeeTierInline,
)
from billing.admin.invoices import (
    AllocationInline,
    CreditNoteAdmin,
    CreditNoteLineInline,
    InvoiceAdmin,
    InvoiceLineInline,
    IssueOverrideAdmin,
    IssueOverrideForm,
    PartnerBillingProfileAdmin,
)
from billing.admin.ledger import ChargeAdmin, PendingFeeAdmin, ReturnReviewAdmin
from billing.admin.payments import (
    ManualAllocationForm,
    PaymentAdmin,
    PaymentAllocationInline,
    PaymentForm,
)

__all__ = [
    "FEE_FIELDS",
    "AllocationInline",
    "ChargeAdmin",
    "CreditNoteAdmin",
    "CreditNoteLineInline",
    "ExchangeRateAdmin",
    "ExchangeRateForm",
    "FeeScheduleAdmin",
    "FeeScheduleForm",
    "FeeTierInline",
    "InvoiceAdmin",
    "InvoiceLineInline",
    "IssueOverrideAdmin",
    "IssueOverrideForm",
    "ManualAllocationForm",
    "PartnerBillingProfileAdmin",
    "PaymentAdmin",
    "PaymentAllocationInline",
    "PaymentForm",
    "PendingFeeAdmin",
    "ReturnReviewAdmin",
]
