"""The monthly invoicing run: every partner with entries due, a batch of partners per
transaction, drafts issued when asked, and a refusal per invoice that could not be issued
(the run goes on).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from django.db.models import Exists, OuterRef
from django.utils import timezone

from billing.invoicing.drafting import invoice_partners
from billing.invoicing.issuing import IssueRefused, _issue
from billing.models import Charge, Invoice, InvoiceStatus
from billing.periods import InvoicingError, Period
from partners.models import Partner

log = logging.getLogger(__name__)


# Partners invoiced per transaction: few round trips, bounded lock time and memory.
BATCH = 100


@dataclass(frozen=True)
class Refusal:
    invoice: Invoice
    differences: list[str]


@dataclass
class InvoicingRun:
    """What one run did: drafts made, invoices issued (new drafts and drafts of the month
    made earlier), and drafts refused with their reconciliation differences."""

    period: Period
    made: list[Invoice] = field(default_factory=list)
    issued: list[Invoice] = field(default_factory=list)
    refused: list[Refusal] = field(default_factory=list)


# (stage, done, total) as a run goes: "Partners drafted" after each batch of partners, then
# "Invoices issued" after each draft it tried to issue (a command's progress bar).
RunProgress = Callable[[str, int, int], None]
DRAFTED = "Partners drafted"
ISSUED = "Invoices issued"


def _no_progress(stage: str, done: int, total: int) -> None:
    pass


def invoice_month(
    *, period: Period, issue: bool = False, progress: RunProgress | None = None
) -> InvoicingRun:
    """Draft every partner's invoices for a closed or current month; with ``issue``, then
    issue every draft of the month (also those made by an earlier run), each only if
    reconciliation of its partner and months is clean. ``progress`` hears how far it got."""
    progress = progress or _no_progress
    if period.start > timezone.now().date():
        raise InvoicingError(f"period {period} is in the future")
    billed = Charge.objects.filter(partner_id=OuterRef("pk"), period__lte=period.start)
    partner_ids = list(
        Partner.objects.filter(Exists(billed)).order_by("pk").values_list("pk", flat=True)
    )
    run = InvoicingRun(period=period)
    progress(DRAFTED, 0, len(partner_ids))
    for start in range(0, len(partner_ids), BATCH):
        batch = partner_ids[start : start + BATCH]
        run.made += invoice_partners(partner_ids=batch, period=period)
        progress(DRAFTED, start + len(batch), len(partner_ids))
    if not issue:
        return run
    drafts = Invoice.objects.filter(period_start=period.start, status=InvoiceStatus.DRAFT).order_by(
        "partner_id", "currency", "created_at"
    )
    draft_ids = list(drafts.values_list("pk", flat=True))
    progress(ISSUED, 0, len(draft_ids))
    for done, draft_id in enumerate(draft_ids, start=1):
        try:
            invoice, issued_now = _issue(invoice_id=draft_id, override=None)
        except IssueRefused as refused:
            log.warning(
                "invoice %s of %s not issued: %d reconciliation difference(s)",
                refused.invoice.pk,
                period,
                len(refused.differences),
            )
            run.refused.append(Refusal(refused.invoice, refused.differences))
        else:
            if issued_now:  # not by a concurrent run
                run.issued.append(invoice)
            else:  # a concurrent run issued it: show it as it is now
                run.made = [invoice if i.pk == invoice.pk else i for i in run.made]
        progress(ISSUED, done, len(draft_ids))
    return run


def generate_invoices(*, period: Period, issue: bool = False) -> list[Invoice]:
    """The invoices a run made (issued where issuing was asked and allowed), then drafts
    of the month made earlier that it issued. Refused drafts stay drafts
    (:func:`invoice_month` says which and why)."""
    run = invoice_month(period=period, issue=issue)
    issued = {invoice.pk: invoice for invoice in run.issued}
    made = [issued.pop(invoice.pk, invoice) for invoice in run.made]
    return made + list(issued.values())
