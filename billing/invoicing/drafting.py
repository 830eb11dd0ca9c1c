"""Draft invoices of a partner's months: the ledger entries of each month not yet
invoiced summed into lines per product, fee kind and entry type (a handful of aggregates,
no ledger row updated), credit notes for corrections of charges already on an issued
invoice, and a replacement for a voided invoice when its month is run again.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Iterable
from datetime import date
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Count, F, Min, Sum

from billing.charging import retier_months
from billing.invoicing.credit_notes import _issue_credit_note
from billing.invoicing.figures import _totals
from billing.locks import lock_billing_rows
from billing.models import (
    Charge,
    CreditNote,
    CreditNoteKind,
    CreditNoteLine,
    EntryType,
    FeeKind,
    FeeTier,
    Invoice,
    InvoiceLine,
    InvoiceStatus,
    PartnerBillingProfile,
)
from billing.money import ZERO, to_cents
from billing.periods import Period, next_month
from billing.tiers import months_to_retier
from partners.models import Product

EARLIEST = date(2000, 1, 1)


def describe_line(product_name: str, kind: str, entry_type: str) -> str:
    suffix = {
        EntryType.CREDIT: " (returns)",
        EntryType.REVERSAL: " (reversals)",
        EntryType.REPRICE: " (repriced)",
    }
    return f"{product_name}: {FeeKind(kind).label}{suffix.get(entry_type, '')}"  # type: ignore[call-overload]


def _product_names(ids: Iterable[Any]) -> dict[Any, str]:
    return dict(Product.objects.filter(pk__in=set(ids)).values_list("pk", "name"))


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
