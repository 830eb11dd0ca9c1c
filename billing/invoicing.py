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
"""

from __future__ import annotations

import logging
import uuid
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Count, Exists, F, Min, OuterRef, Sum
from django.utils import timezone

from billing import credit
from billing.charging import retier_months
from billing.locks import lock_billing_rows
from billing.models import (
    Charge,
    CreditNote,
    CreditNoteKind,
    CreditNoteLine,
    CreditNoteSequence,
    EntryType,
    FeeKind,
    FeeTier,
    Invoice,
    InvoiceLine,
    InvoiceSequence,
    InvoiceStatus,
    IssueOverride,
    PartnerBillingProfile,
    PaymentAllocation,
)
from billing.money import ZERO, to_cents
from billing.periods import InvoicingError, Period, next_month
from billing.reconcile import reconcile_invoice
from billing.tiers import months_to_retier
from partners.models import Partner, Product
from partners.webhook_delivery import enqueue

EARLIEST = date(2000, 1, 1)
# An override of a failed reconciliation says why in at least this many characters.
MIN_OVERRIDE_REASON = 10

log = logging.getLogger(__name__)


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


def describe_line(product_name: str, kind: str, entry_type: str) -> str:
    suffix = {
        EntryType.CREDIT: " (returns)",
        EntryType.REVERSAL: " (reversals)",
        EntryType.REPRICE: " (repriced)",
    }
    return f"{product_name}: {FeeKind(kind).label}{suffix.get(entry_type, '')}"  # type: ignore[call-overload]


def _product_names(ids: Iterable[Any]) -> dict[Any, str]:
    return dict(Product.objects.filter(pk__in=set(ids)).values_list("pk", "name"))


def _totals(subtotal: Decimal, rate: Decimal) -> tuple[Decimal, Decimal, Decimal]:
    subtotal = to_cents(subtotal)
    tax = to_cents(subtotal * rate)
    return subtotal, tax, subtotal + tax


def _billed_invoice(partner_id: Any, currency: str, month: date) -> Invoice | None:
    """The issued (not void) invoice that billed ``month`` for the partner, if any."""
    return (
        Invoice.objects.filter(
            partner_id=partner_id,
            currency=currency,
            first_period__lte=month,
            period_start__gte=month,
        )
        .exclude(status__in=[InvoiceStatus.DRAFT, InvoiceStatus.VOID])
        .first()
    )


def _credit_notes_for_corrections(partner_id: Any, through: date) -> list[CreditNote]:
    """Credit notes for the partner's returns and reversals of charges in months already
    invoiced (whenever they happened), one per corrected invoice."""
    corrections = (
        Charge.objects.filter(
            partner_id=partner_id,
            credit_note__isnull=True,
            period__gt=through,  # in a month not invoiced yet (else it netted there)
            corrects__period__lte=through,
        )
        .exclude(entry_type=EntryType.CHARGE)
        .select_related("corrects")
    )
    by_invoice: dict[Invoice, list[Charge]] = defaultdict(list)
    found: dict[tuple[str, date], Invoice | None] = {}
    for entry in corrections:
        assert entry.corrects is not None
        key = (entry.currency, entry.corrects.period)
        if key not in found:
            found[key] = _billed_invoice(partner_id, entry.currency, entry.corrects.period)
        invoice = found[key]
        if invoice is not None:  # else: the original is not on an issued invoice; it nets
            by_invoice[invoice].append(entry)
    notes = []
    for invoice, entries in by_invoice.items():
        groups: dict[tuple[Any, str, str], list[Charge]] = defaultdict(list)
        for entry in entries:
            groups[(entry.product_id, entry.kind, entry.entry_type)].append(entry)
        names = _product_names(product for product, _, _ in groups)
        lines = [
            CreditNoteLine(
                product_id=product,
                kind=kind,
                entry_type=entry_type,
                description=describe_line(names[product], kind, entry_type),
                quantity=len(group),
                amount=to_cents(-sum((e.amount for e in group), ZERO)),
            )
            for (product, kind, entry_type), group in sorted(
                groups.items(), key=lambda item: (names[item[0][0]], item[0][1], item[0][2])
            )
        ]
        note = _issue_credit_note(
            invoice=invoice,
            kind=CreditNoteKind.CORRECTIONS,
            reason="Returns and reversals of invoiced charges",
            lines=lines,
        )
        Charge.objects.filter(pk__in=[e.pk for e in entries]).update(credit_note=note)
        notes.append(note)
    return notes


def _make_invoices(
    partner_ids: list[Any], first: date, last: date, currencies: set[str] | None = None
) -> list[Invoice]:
    """Draft invoices billing the partners' entries of months [first, last], one per
    partner and currency: one aggregate over the ledger, a few bulk inserts."""
    rows = (
        Charge.objects.filter(
            partner_id__in=partner_ids,
            period__gte=first,
            period__lte=last,
            credit_note__isnull=True,
        )
        .values("partner_id", "currency", "product_id", "kind", "entry_type")
        .annotate(quantity=Count("*"), amount=Sum("amount"), first=Min("period"))
        .order_by()
    )
    if currencies is not None:
        rows = rows.filter(currency__in=currencies)
    groups: dict[tuple[Any, str], list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        groups[(row["partner_id"], row["currency"])].append(dict(row))
    names = _product_names(row["product_id"] for group in groups.values() for row in group)
    rate = Decimal(str(settings.VAT_RATE))
    invoices, all_lines = [], []
    for (partner_id, currency), group in sorted(
        groups.items(), key=lambda g: (str(g[0][0]), g[0][1])
    ):
        lines = sorted(
            (
                InvoiceLine(
                    product_id=row["product_id"],
                    kind=row["kind"],
                    entry_type=row["entry_type"],
                    description=describe_line(
                        names[row["product_id"]], row["kind"], row["entry_type"]
                    ),
                    quantity=row["quantity"],
                    amount=to_cents(row["amount"]),
                )
                for row in group
            ),
            key=lambda line: (names[line.product_id], line.kind, line.entry_type),
        )
        subtotal, tax, total = _totals(sum((line.amount for line in lines), ZERO), rate)
        invoice = Invoice(
            partner_id=partner_id,
            currency=currency,
            period_start=last,
            # Never billed before: the invoice starts at its earliest entry's month.
            first_period=min(row["first"] for row in group) if first == EARLIEST else first,
            subtotal=subtotal,
            tax_rate=rate,
            tax=tax,
            total=total,
        )
        for line in lines:
            line.invoice = invoice
        invoices.append(invoice)
        all_lines += lines
    # Under the partners' billing locks no other run can insert these invoices; the
    # unique constraint would still refuse a second one for the month.
    Invoice.objects.bulk_create(invoices)
    InvoiceLine.objects.bulk_create(all_lines, batch_size=2000)
    return invoices


def invoice_partners(*, partner_ids: list[uuid.UUID], period: Period) -> list[Invoice]:
    """Draft invoices for a month for these partners (and credit notes for corrections
    of their invoiced charges) in one transaction; a partner whose month was invoiced
    already gets nothing (unless its invoice was voided: then a replacement)."""
    with transaction.atomic():
        profiles = lock_billing_rows(partner_ids=partner_ids)
        # Tiered units are numbered by event time: units reported late renumber the month,
        # and the prices of the units billed now are brought up to date first (only for
        # partners with tiers: one query for the batch).
        tiered = set(
            FeeTier.objects.filter(schedule__partner_id__in=partner_ids).values_list(
                "schedule__partner_id", flat=True
            )
        )
        for profile in profiles:
            if profile.partner_id not in tiered:
                continue
            through = profile.invoiced_through
            first = next_month(through) if through is not None else EARLIEST
            if through is None or through < period.start:
                months = months_to_retier(
                    partner_id=profile.partner_id, first=first, last=period.start
                )
                retier_months(partner_id=profile.partner_id, months=months)
        closed = {p.partner_id: p.invoiced_through for p in profiles if p.invoiced_through}
        for partner_id in _with_corrections_of_billed(list(closed)):
            _credit_notes_for_corrections(partner_id, closed[partner_id])
        made: list[Invoice] = []
        open_by_start: dict[date | None, list[uuid.UUID]] = defaultdict(list)
        for profile in profiles:
            through = profile.invoiced_through
            if through is not None and through >= period.start:
                made += _replace_voided(partner_id=profile.partner_id, period=period)
            else:
                open_by_start[through].append(profile.partner_id)
        for through, ids in open_by_start.items():
            first = next_month(through) if through is not None else EARLIEST
            made += _make_invoices(ids, first, period.start)
            PartnerBillingProfile.objects.filter(partner_id__in=ids).update(
                invoiced_through=period.start
            )
        return made


def _with_corrections_of_billed(ids: list[Any]) -> set[Any]:
    """Partners with a return or reversal not yet credited of a charge in a month
    already invoiced."""
    if not ids:
        return set()
    return set(
        Charge.objects.filter(
            partner_id__in=ids,
            credit_note__isnull=True,
            period__gt=F("partner__billing_profile__invoiced_through"),
            corrects__period__lte=F("partner__billing_profile__invoiced_through"),
        )
        .exclude(entry_type=EntryType.CHARGE)
        .values_list("partner_id", flat=True)
        .distinct()
    )


def invoice_partner(*, partner_id: uuid.UUID, period: Period) -> list[Invoice]:
    return invoice_partners(partner_ids=[partner_id], period=period)


def _replace_voided(*, partner_id: uuid.UUID, period: Period) -> list[Invoice]:
    made = []
    voided = Invoice.objects.filter(
        partner_id=partner_id, period_start=period.start, status=InvoiceStatus.VOID
    ).order_by("-voided_at")
    for void in voided:
        live = Invoice.objects.filter(
            partner_id=partner_id, currency=void.currency, period_start=period.start
        ).exclude(status=InvoiceStatus.VOID)
        if not live.exists():
            made += _make_invoices([partner_id], void.first_period, period.start, {void.currency})
    return made


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


def invoice_month(*, period: Period, issue: bool = False) -> InvoicingRun:
    """Draft every partner's invoices for a closed or current month; with ``issue``, then
    issue every draft of the month (also those made by an earlier run), each only if
    reconciliation of its partner and months is clean."""
    if period.start > timezone.now().date():
        raise InvoicingError(f"period {period} is in the future")
    billed = Charge.objects.filter(partner_id=OuterRef("pk"), period__lte=period.start)
    partner_ids = list(
        Partner.objects.filter(Exists(billed)).order_by("pk").values_list("pk", flat=True)
    )
    run = InvoicingRun(period=period)
    for start in range(0, len(partner_ids), BATCH):
        batch = partner_ids[start : start + BATCH]
        run.made += invoice_partners(partner_ids=batch, period=period)
    if not issue:
        return run
    drafts = Invoice.objects.filter(period_start=period.start, status=InvoiceStatus.DRAFT).order_by(
        "partner_id", "currency", "created_at"
    )
    for draft_id in list(drafts.values_list("pk", flat=True)):
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
    return run


def generate_invoices(*, period: Period, issue: bool = False) -> list[Invoice]:
    """The invoices a run made (issued where issuing was asked and allowed), then drafts
    of the month made earlier that it issued. Refused drafts stay drafts
    (:func:`invoice_month` says which and why)."""
    run = invoice_month(period=period, issue=issue)
    issued = {invoice.pk: invoice for invoice in run.issued}
    made = [issued.pop(invoice.pk, invoice) for invoice in run.made]
    return made + list(issued.values())


def _next_number(
    sequence_model: type[InvoiceSequence] | type[CreditNoteSequence], year: int
) -> int:
    sequence_model.objects.get_or_create(year=year)
    # Locked until commit: a concurrent issuer waits, so numbers have no gaps or repeats.
    sequence = sequence_model.objects.select_for_update().get(pk=year)
    sequence.last_number += 1
    sequence.save(update_fields=["last_number"])
    return sequence.last_number


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


__all__ = [
    "InvoicingError",
    "InvoicingRun",
    "IssueRefused",
    "Override",
    "Period",
    "Refusal",
    "generate_invoices",
    "invoice_month",
    "issue_invoice",
    "refresh_payment_status",
    "void_invoice",
]
