"""Reconciliation of one month: events, charges, invoice lines and totals agree to the cent.

It explains what is expected not to match (sandbox traffic is never charged; an event
without a fee schedule in force is not; returns awaiting approval are not credited yet;
charges of a month not invoiced yet) and reports as a *difference* anything else: a
billable event without a charge, a correction that is not the exact negative of its
charge, an uncredited return or reversal, an invoice whose lines do not sum its charges or
whose total is not subtotal + tax, a credit note likewise, payments above what is due.

Billable events are those of ``pricing.EVENT_FEE_KIND``: accepted, approved, funded and
revenue (one revenue share charge per revenue event).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from django.db.models import Count, Q, Sum

from billing.charging import schedule_in_force
from billing.invoicing import Period, invoice_charges
from billing.models import (
    Charge,
    CreditNote,
    CreditNoteKind,
    EntryType,
    Invoice,
    InvoiceStatus,
    PartnerBillingProfile,
    ReturnReview,
    ReviewStatus,
)
from billing.money import ZERO, to_cents
from billing.pricing import EVENT_FEE_KIND
from billing.statements import with_open_amounts
from marketplace.models import EventType, LeadEvent


@dataclass
class Report:
    period: Period
    facts: list[str] = field(default_factory=list)
    explained: list[str] = field(default_factory=list)
    differences: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.differences


def _month(period: Period) -> tuple[datetime, datetime]:
    start = datetime.combine(period.start, datetime.min.time(), tzinfo=UTC)
    return start, period.end_datetime


def _events(report: Report, start: datetime, end: datetime) -> None:
    billable = LeadEvent.objects.filter(
        type__in=list(EVENT_FEE_KIND), occurred_at__gte=start, occurred_at__lt=end
    )
    sandbox = billable.filter(lead__is_sandbox=True).count()
    if sandbox:
        report.explained.append(f"{sandbox} billable sandbox event(s): sandbox is never charged")
    live = billable.filter(lead__is_sandbox=False)
    charged = Charge.objects.filter(event__in=live, entry_type=EntryType.CHARGE)
    total = charged.aggregate(n=Count("id"), s=Sum("amount"))
    report.facts.append(
        f"{live.count()} live billable event(s); {total['n']} charged, "
        f"{to_cents(total['s'] or ZERO)}"
    )
    for event in live.filter(charges__isnull=True).select_related("lead"):
        lead = event.lead
        if schedule_in_force(lead=lead, at=event.occurred_at) is None and not (
            event.type == EventType.ACCEPTED and lead.bid_amount is not None
        ):
            report.explained.append(f"{event.type} event {event.id}: no fee schedule in force")
        else:
            report.differences.append(
                f"{event.type} event {event.id} of lead {lead.id} has no charge"
            )


def _corrections(report: Report, start: datetime, end: datetime) -> None:
    fixes = Charge.objects.filter(occurred_at__gte=start, occurred_at__lt=end).exclude(
        entry_type=EntryType.CHARGE
    )
    for fix in fixes.select_related("corrects"):
        assert fix.corrects is not None
        if fix.amount != -fix.corrects.amount or fix.currency != fix.corrects.currency:
            report.differences.append(
                f"{fix.entry_type} {fix.id} is {fix.amount}, its charge {fix.corrects.amount}"
            )
    returns = LeadEvent.objects.filter(
        type=EventType.RETURNED, occurred_at__gte=start, occurred_at__lt=end, lead__is_sandbox=False
    )
    waiting = dict(
        ReturnReview.objects.filter(event__in=returns)
        .exclude(status=ReviewStatus.APPROVED)
        .values_list("event_id", "status")
    )
    credited = 0
    for event in returns:
        first = (
            LeadEvent.objects.filter(lead_id=event.lead_id, type=EventType.RETURNED)
            .order_by("occurred_at", "received_at", "id")
            .first()
        )
        if first != event:
            continue
        open_charges = Charge.objects.filter(
            lead_id=event.lead_id, entry_type=EntryType.CHARGE, corrections__isnull=True
        ).count()
        if not open_charges:
            credited += 1
        elif event.id in waiting:
            report.explained.append(
                f"return {event.id}: {waiting[event.id]} approval, not credited"
            )
        else:
            report.differences.append(f"return {event.id} left {open_charges} charge(s) uncredited")
    report.facts.append(f"{returns.count()} return(s), {credited} lead(s) fully credited")
    reversals = LeadEvent.objects.filter(
        type=EventType.REVERSAL, occurred_at__gte=start, occurred_at__lt=end, lead__is_sandbox=False
    )
    for event in reversals.filter(reverses__isnull=False):
        uncorrected = Charge.objects.filter(
            event_id=event.reverses_id, entry_type=EntryType.CHARGE, corrections__isnull=True
        )
        if uncorrected.exists():
            report.differences.append(f"reversal {event.id} left its event's charge standing")
    report.facts.append(f"{reversals.count()} reversal(s)")


def _lines_match(
    report: Report,
    label: str,
    lines: dict[Any, tuple[int, Decimal]],
    charges: dict[Any, tuple[int, Decimal]],
) -> None:
    for key in sorted(set(lines) | set(charges), key=str):
        if lines.get(key) != charges.get(key):
            report.differences.append(
                f"{label}: line {key} is {lines.get(key)}, its ledger entries {charges.get(key)}"
            )


def _totals_match(report: Report, label: str, doc: Invoice | CreditNote, line_sum: Decimal) -> None:
    if doc.subtotal != to_cents(line_sum):
        report.differences.append(f"{label}: subtotal {doc.subtotal} != lines {to_cents(line_sum)}")
    if doc.tax != to_cents(doc.subtotal * doc.tax_rate):
        report.differences.append(
            f"{label}: tax {doc.tax} != {to_cents(doc.subtotal * doc.tax_rate)}"
        )
    if doc.total != doc.subtotal + doc.tax:
        report.differences.append(f"{label}: total {doc.total} != subtotal + tax")


def _invoices(report: Report, period: Period) -> None:
    invoices = Invoice.objects.filter(period_start=period.start).exclude(status=InvoiceStatus.DRAFT)
    billed = ZERO
    for invoice in invoices.select_related("partner"):
        label = f"invoice {invoice}"
        lines = {
            (x.product_id, x.kind, x.entry_type): (x.quantity, x.amount)
            for x in invoice.lines.all()
        }
        rows = (
            invoice_charges(invoice)
            .values("product_id", "kind", "entry_type")
            .annotate(n=Count("id"), s=Sum("amount"))
            .order_by()
        )
        charges = {
            (r["product_id"], r["kind"], r["entry_type"]): (r["n"], to_cents(r["s"])) for r in rows
        }
        _lines_match(report, label, lines, charges)
        _totals_match(report, label, invoice, sum((a for _, a in lines.values()), ZERO))
        if invoice.status != InvoiceStatus.VOID:
            billed += invoice.subtotal
    for number, open_amount, allocated in with_open_amounts(invoices).values_list(  # type: ignore[misc]
        "number", "open_amount", "allocated"
    ):
        if open_amount < 0 and allocated > 0:
            report.differences.append(
                f"invoice {number}: payments exceed what was due by {-open_amount}"
            )
    report.facts.append(
        f"{invoices.count()} issued invoice(s) for {period}, net billed {to_cents(billed)}"
    )
    # Entries of this month that no live invoice bills.
    live = Invoice.objects.exclude(status=InvoiceStatus.VOID)
    through = dict(PartnerBillingProfile.objects.values_list("partner_id", "invoiced_through"))
    loose = (
        Charge.objects.filter(period=period.start, credit_note__isnull=True)
        .values("partner_id", "currency")
        .annotate(n=Count("id"), s=Sum("amount"))
        .order_by()
    )
    for row in loose:
        covered = live.filter(
            partner_id=row["partner_id"],
            currency=row["currency"],
            first_period__lte=period.start,
            period_start__gte=period.start,
        ).first()
        if covered is not None and covered.status == InvoiceStatus.DRAFT:
            report.explained.append(f"{row['n']} entries of partner {row['partner_id']} on a draft")
        elif covered is None:
            closed = through.get(row["partner_id"])
            if closed is not None and closed >= period.start:
                report.differences.append(
                    f"{row['n']} entries ({row['currency']} {to_cents(row['s'])}) of partner "
                    f"{row['partner_id']} in an invoiced month are on no invoice"
                )
            else:
                report.explained.append(
                    f"{row['n']} entries ({row['currency']} {to_cents(row['s'])}) of partner "
                    f"{row['partner_id']}: month not invoiced yet"
                )


def _credit_notes(report: Report, start: datetime, end: datetime) -> None:
    notes = CreditNote.objects.filter(
        Q(issued_at__gte=start, issued_at__lt=end)
        | Q(charges__occurred_at__gte=start, charges__occurred_at__lt=end)
    ).distinct()
    for note in notes.select_related("invoice"):
        label = f"credit note {note.number}"
        lines = {
            (x.product_id, x.kind, x.entry_type): (x.quantity, x.amount) for x in note.lines.all()
        }
        if note.kind == CreditNoteKind.VOID:
            expected = {
                (x.product_id, x.kind, x.entry_type): (x.quantity, x.amount)
                for x in note.invoice.lines.all()
            }
            if note.total != note.invoice.total:
                report.differences.append(f"{label}: voids {note.invoice} but credits {note.total}")
        else:
            grouped: dict[Any, list[Decimal]] = defaultdict(list)
            for c in note.charges.all():
                grouped[(c.product_id, c.kind, c.entry_type)].append(c.amount)
            expected = {k: (len(v), to_cents(-sum(v, ZERO))) for k, v in grouped.items()}
        _lines_match(report, label, lines, expected)
        _totals_match(report, label, note, sum((a for _, a in lines.values()), ZERO))
    report.facts.append(f"{notes.count()} credit note(s) checked")


def reconcile(*, period: Period) -> Report:
    report = Report(period=period)
    start, end = _month(period)
    _events(report, start, end)
    _corrections(report, start, end)
    _invoices(report, period)
    _credit_notes(report, start, end)
    return report
