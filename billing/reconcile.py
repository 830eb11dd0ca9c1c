"""Reconciliation: events, the ledger, invoice lines and totals agree to the cent.

Run for a month (``reconcile``), for one partner's month (``reconcile_partner``) or for the
months an invoice bills (``reconcile_invoice``, which issuing requires to be clean).

The ledger rules it checks (README "Billing", R3, R4, R7), recomputed here from the events
themselves, not from what charging decided:

- every *chain* (a lead's fee kind; for revenue share a lead's revenue period) is a
  sequence seq 1, 2, 3, ...: odd positions are charges, even ones the exact negative
  (amount and currency) of the charge just before; so its net is 0 or 1 unit;
- a chain's fee is *due* while its billable event stands (reported and not reversed) and
  the lead has no crediting return (its first standing return, unless that return awaits
  or was refused approval); due: net 1, not due: net 0;
- a due fee waiting for an exchange rate (``PendingFee``) is a difference: the months it
  falls in cannot be invoiced until it is booked.

It explains what is expected not to match (sandbox traffic is never charged; a fee with no
fee schedule in force is not charged until one exists; a first return awaiting or refused
approval credits nothing; entries of a month not invoiced yet) and reports as a
*difference* anything else, including an invoice or credit note whose lines do not sum its
entries or whose total is not subtotal + tax, and payments above what was due.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from django.db.models import Count, Q, Sum

from billing.charging import schedule_in_force
from billing.models import (
    Charge,
    CreditNote,
    CreditNoteKind,
    EntryType,
    Invoice,
    InvoiceStatus,
    PartnerBillingProfile,
    PendingFee,
    ReturnReview,
    ReviewStatus,
)
from billing.money import ZERO, to_cents
from billing.periods import Period, entries_billed_by, month_start, next_month
from billing.pricing import EVENT_FEE_KIND
from billing.statements import with_open_amounts
from marketplace.models import EventType, Lead, LeadEvent

# Leads whose events and entries are read at once.
CHUNK = 500


@dataclass
class Report:
    period: Period
    partner_id: uuid.UUID | None = None
    facts: list[str] = field(default_factory=list)
    explained: list[str] = field(default_factory=list)
    differences: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.differences

    def merge(self, other: Report) -> None:
        self.facts += other.facts
        self.explained += other.explained
        self.differences += other.differences


def _month(period: Period) -> tuple[datetime, datetime]:
    return period.start_datetime, period.end_datetime


def _for_partner(queryset: Any, partner_id: uuid.UUID | None) -> Any:
    return queryset if partner_id is None else queryset.filter(partner_id=partner_id)


def _touched_leads(period: Period, partner_id: uuid.UUID | None) -> list[uuid.UUID]:
    """Live leads with an event in the month, or a ledger entry that happened in it or is
    billed in it."""
    start, end = _month(period)
    events = _for_partner(
        LeadEvent.objects.filter(
            lead__is_sandbox=False, occurred_at__gte=start, occurred_at__lt=end
        ),
        partner_id,
    )
    entries = _for_partner(
        Charge.objects.filter(
            Q(occurred_at__gte=start, occurred_at__lt=end) | Q(period=period.start)
        ),
        partner_id,
    )
    return sorted(
        set(events.values_list("lead_id", flat=True).distinct())
        | set(entries.values_list("lead_id", flat=True).distinct())
    )


def _chain_of(event: LeadEvent) -> tuple[str, str]:
    kind = EVENT_FEE_KIND[event.type]
    return kind, event.revenue_period if kind == "revshare" else ""


def _check_sequence(report: Report, label: str, entries: list[Charge]) -> int:
    """Differences in a chain's sequence; returns its net units."""
    net = 0
    for position, entry in enumerate(entries, start=1):
        if entry.seq != position:
            report.differences.append(f"{label}: position {position} holds seq {entry.seq}")
            break
        if position % 2:
            if entry.entry_type != EntryType.CHARGE:
                report.differences.append(f"{label}: seq {position} is a {entry.entry_type}")
            net += 1
            continue
        before = entries[position - 2]
        if entry.entry_type == EntryType.CHARGE:
            report.differences.append(f"{label}: seq {position} is a charge after a charge")
        elif entry.corrects_id != before.id:
            report.differences.append(f"{label}: seq {position} corrects another entry")
        elif entry.amount != -before.amount or entry.currency != before.currency:
            report.differences.append(
                f"{label}: {entry.entry_type} seq {position} is {entry.currency} {entry.amount}, "
                f"its charge {before.currency} {before.amount}"
            )
        net -= 1
    if net not in (0, 1):
        report.differences.append(f"{label}: net {net} unit(s), not 0 or 1")
    return net


def _check_lead(
    report: Report,
    lead: Lead,
    events: list[LeadEvent],
    entries: list[Charge],
    reviews: dict[uuid.UUID, str],
    waiting: set[tuple[uuid.UUID, str]],
) -> tuple[int, int]:
    """The lead's chains against what is due; returns (chains due, chains charged)."""
    reversed_ids = {e.reverses_id for e in events if e.type == EventType.REVERSAL}
    standing = [e for e in events if e.type != EventType.REVERSAL and e.id not in reversed_ids]
    returns = sorted(
        (e for e in standing if e.type == EventType.RETURNED),
        key=lambda e: (e.occurred_at, e.external_id),
    )
    crediting = None
    if returns:
        first = returns[0]
        status = reviews.get(first.id)
        if status is None or status == ReviewStatus.APPROVED:
            crediting = first
        else:
            report.explained.append(f"return {first.id} of lead {lead.id}: {status} approval")
    due: dict[tuple[str, str], LeadEvent] = {}
    if crediting is None:
        for event in sorted(standing, key=lambda e: (e.occurred_at, e.external_id)):
            if event.type in EVENT_FEE_KIND:
                due[_chain_of(event)] = event
    chains: dict[tuple[str, str], list[Charge]] = defaultdict(list)
    for entry in entries:
        chains[(entry.kind, entry.chain)].append(entry)
    charged = 0
    for key in sorted(set(chains) | set(due)):
        kind, chain = key
        label = f"lead {lead.id} {kind}{' ' + chain if chain else ''}"
        net = _check_sequence(report, label, sorted(chains.get(key, []), key=lambda e: e.seq))
        charged += net == 1
        target = due.get(key)
        if target is not None and net == 0:
            if (target.id, kind) in waiting:
                report.differences.append(
                    f"{label}: due for {target.type} event {target.id}, waiting for an "
                    "exchange rate (needs rate)"
                )
            elif schedule_in_force(lead=lead, at=target.occurred_at) is None and not (
                kind == "cpl" and lead.bid_amount is not None
            ):
                report.explained.append(f"{label}: no fee schedule in force")
            else:
                report.differences.append(
                    f"{label}: due for {target.type} event {target.id}, not charged"
                )
        elif target is None and net == 1:
            why = f"lead returned by {crediting.id}" if crediting else "its event was reversed"
            report.differences.append(f"{label}: charged though not due ({why})")
        elif target is not None and net == 1:
            open_charge = max(chains[key], key=lambda e: e.seq)
            if open_charge.event_id in reversed_ids:
                report.differences.append(f"{label}: the open charge's event was reversed")
    return len(due), charged


def _chunks(ids: list[uuid.UUID]) -> Iterable[list[uuid.UUID]]:
    for begin in range(0, len(ids), CHUNK):
        yield ids[begin : begin + CHUNK]


def _check_leads(report: Report, lead_ids: list[uuid.UUID]) -> tuple[int, int]:
    """Every chain of these leads against what is due; returns (fees due, charged)."""
    due = charged = 0
    for ids in _chunks(lead_ids):
        events: dict[uuid.UUID, list[LeadEvent]] = defaultdict(list)
        for event in LeadEvent.objects.filter(lead_id__in=ids):
            events[event.lead_id].append(event)
        entries: dict[uuid.UUID, list[Charge]] = defaultdict(list)
        for entry in Charge.objects.filter(lead_id__in=ids):
            entries[entry.lead_id].append(entry)
        reviews = dict(
            ReturnReview.objects.filter(lead_id__in=ids).values_list("event_id", "status")
        )
        waiting = set(
            PendingFee.objects.filter(lead_id__in=ids, resolved_at__isnull=True).values_list(
                "event_id", "kind"
            )
        )
        for lead in Lead.objects.filter(pk__in=ids).order_by("pk"):
            n_due, n_charged = _check_lead(
                report, lead, events[lead.pk], entries[lead.pk], reviews, waiting
            )
            due += n_due
            charged += n_charged
    return due, charged


def _chains(report: Report, period: Period, partner_id: uuid.UUID | None) -> None:
    start, end = _month(period)
    billable = _for_partner(
        LeadEvent.objects.filter(
            type__in=list(EVENT_FEE_KIND), occurred_at__gte=start, occurred_at__lt=end
        ),
        partner_id,
    )
    sandbox = billable.filter(lead__is_sandbox=True).count()
    if sandbox:
        report.explained.append(f"{sandbox} billable sandbox event(s): sandbox is never charged")
    on_sandbox = _for_partner(Charge.objects.filter(lead__is_sandbox=True), partner_id).filter(
        Q(occurred_at__gte=start, occurred_at__lt=end) | Q(period=period.start)
    )
    for entry_id in on_sandbox.values_list("id", flat=True):
        report.differences.append(f"entry {entry_id} charges a sandbox lead")
    lead_ids = _touched_leads(period, partner_id)
    due, charged = _check_leads(report, lead_ids)
    live = billable.filter(lead__is_sandbox=False).count()
    report.facts.append(
        f"{live} live billable event(s) in {period}; {len(lead_ids)} lead(s) checked: "
        f"{due} fee(s) due, {charged} charged"
    )


def _earlier_pending_fees(report: Report, before: datetime, partner_id: uuid.UUID) -> None:
    """Fees of the partner from before ``before`` still waiting for an exchange rate: once
    booked they are billed in the first month not invoiced yet, so they block it too."""
    lead_ids = sorted(
        set(
            PendingFee.objects.filter(
                partner_id=partner_id, resolved_at__isnull=True, occurred_at__lt=before
            ).values_list("lead_id", flat=True)
        )
    )
    if lead_ids:
        _check_leads(report, lead_ids)


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


def _check_invoice(report: Report, invoice: Invoice) -> None:
    """Its lines against the ledger entries it bills, and its totals."""
    label = f"invoice {invoice}"
    lines = {
        (x.product_id, x.kind, x.entry_type): (x.quantity, x.amount) for x in invoice.lines.all()
    }
    rows = (
        entries_billed_by(invoice)
        .values("product_id", "kind", "entry_type")
        .annotate(n=Count("id"), s=Sum("amount"))
        .order_by()
    )
    charges = {
        (r["product_id"], r["kind"], r["entry_type"]): (r["n"], to_cents(r["s"])) for r in rows
    }
    _lines_match(report, label, lines, charges)
    _totals_match(report, label, invoice, sum((a for _, a in lines.values()), ZERO))


def _invoices(report: Report, period: Period, partner_id: uuid.UUID | None) -> None:
    invoices = _for_partner(Invoice.objects.filter(period_start=period.start), partner_id)
    billed: dict[str, Decimal] = defaultdict(lambda: ZERO)  # per currency: never summed
    for invoice in invoices.select_related("partner").order_by("created_at"):
        # Drafts too: a draft that disagrees with its entries must not be issued.
        _check_invoice(report, invoice)
        if invoice.status not in (InvoiceStatus.VOID, InvoiceStatus.DRAFT):
            billed[invoice.currency] += invoice.subtotal
    issued = invoices.exclude(status=InvoiceStatus.DRAFT)
    for number, open_amount, allocated in with_open_amounts(issued).values_list(  # type: ignore[misc]
        "number", "open_amount", "allocated"
    ):
        # SQLite returns the annotation as a binary float: compare to the cent.
        open_amount = to_cents(Decimal(str(open_amount)))
        if open_amount < 0 and allocated > 0:
            report.differences.append(
                f"invoice {number}: payments exceed what was due by {-open_amount}"
            )
    net = ", ".join(f"{code} {to_cents(amount)}" for code, amount in sorted(billed.items()))
    report.facts.append(
        f"{issued.count()} issued invoice(s) for {period}, net billed {net or 'nothing'}"
    )
    # Entries of this month that no live invoice bills.
    live = Invoice.objects.exclude(status=InvoiceStatus.VOID)
    through = dict(
        _for_partner(PartnerBillingProfile.objects, partner_id).values_list(
            "partner_id", "invoiced_through"
        )
    )
    loose = (
        _for_partner(
            Charge.objects.filter(period=period.start, credit_note__isnull=True), partner_id
        )
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


def _credit_notes(report: Report, period: Period, partner_id: uuid.UUID | None) -> None:
    start, end = _month(period)
    notes = _for_partner(
        CreditNote.objects.filter(
            Q(issued_at__gte=start, issued_at__lt=end)
            | Q(charges__occurred_at__gte=start, charges__occurred_at__lt=end)
        ),
        partner_id,
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


def reconcile(*, period: Period, partner_id: uuid.UUID | None = None) -> Report:
    """A month, for every partner or for one."""
    report = Report(period=period, partner_id=partner_id)
    _chains(report, period, partner_id)
    _invoices(report, period, partner_id)
    _credit_notes(report, period, partner_id)
    return report


def reconcile_partner(partner_id: uuid.UUID, period: Period) -> Report:
    return reconcile(period=period, partner_id=partner_id)


def reconcile_invoice(invoice: Invoice) -> Report:
    """Every month the invoice bills, for its partner (its own lines and totals included),
    and the partner's fees from earlier months still waiting for an exchange rate (once
    booked they are billed in the first month not invoiced yet)."""
    report = Report(period=Period(invoice.period_start), partner_id=invoice.partner_id)
    month: date = invoice.first_period
    while month <= invoice.period_start:
        report.merge(reconcile_partner(invoice.partner_id, Period(month)))
        month = next_month(month)
    _earlier_pending_fees(report, month_start(invoice.first_period), invoice.partner_id)
    return report
