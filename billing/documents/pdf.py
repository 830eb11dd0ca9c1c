"""The invoice and credit-note PDFs: each is a ``Document`` (parties, facts, lines and
totals) laid out by ``pdf_layout.build``; an invoice adds its summaries, credit notes, how to
pay and the detail appendix."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from billing.documents.html_csv import Operator, context
from billing.documents.pdf_layout import (
    Document,
    Pdf,
    amount_text,
    build,
    buyer,
    period_text,
    seller,
)
from billing.models import CreditNote, Invoice

if TYPE_CHECKING:
    from reportlab.platypus import Flowable


def render_pdf(invoice: Invoice) -> bytes:
    """An invoice as PDF: the parts every document has (parties, facts, lines and
    totals), then the summaries, any credit notes, how to pay and the detail appendix."""
    data = context(invoice)
    document = _invoice_document(invoice, data)
    pdf = Pdf()
    money = invoice.currency
    extra = [
        *_summaries(pdf, data, money),
        *_credit_notes(pdf, data["credit_notes"], money),
        *_payment_instruction(pdf, data["operator"], invoice.number),
        *_detail_appendix(pdf, data),
    ]
    return build(pdf, document, extra)


def _invoice_document(invoice: Invoice, data: dict[str, Any]) -> Document:
    number = invoice.number or "(draft)"
    facts = [
        ("Invoice", number),
        ("Period", period_text(invoice.first_period, invoice.period_start)),
    ]
    if invoice.issued_at:
        facts += [
            ("Issued", f"{invoice.issued_at:%Y-%m-%d}"),
            ("Due", f"{invoice.due_date:%Y-%m-%d}" if invoice.due_date else "-"),
        ]
    facts += [("Status", invoice.get_status_display()), ("Currency", invoice.currency)]
    return Document(
        title=f"Invoice {number}",
        number=number,
        parties=(seller(), buyer(invoice)),
        facts=facts,
        currency=invoice.currency,
        lines=[(line.description, line.quantity, line.amount) for line in data["lines"]],
        subtotal=invoice.subtotal,
        tax_rate=invoice.tax_rate,
        tax=invoice.tax,
        total=invoice.total,
        total_label="Total due",
    )


def _summaries(pdf: Pdf, data: dict[str, Any], money: str) -> list[Flowable]:
    return [
        pdf.para("Summary by fee type", pdf.heading),
        pdf.grid(
            ["Fee type", f"Amount ({money})"],
            [[name, amount_text(amount)] for name, amount in data["by_kind"]],
            [135, 45],
            numeric=(1,),
        ),
        pdf.para("Summary by product", pdf.heading),
        pdf.grid(
            ["Product", f"Amount ({money})"],
            [[name, amount_text(amount)] for name, amount in data["by_product"]],
            [135, 45],
            numeric=(1,),
        ),
    ]


def _credit_notes(pdf: Pdf, notes: Sequence[CreditNote], money: str) -> list[Flowable]:
    if not notes:
        return []
    return [
        pdf.para("Credit notes against this invoice", pdf.heading),
        pdf.grid(
            ["Number", "Reason", "Issued", f"Credited ({money})"],
            [
                [note.number, note.reason, f"{note.issued_at:%Y-%m-%d}", amount_text(note.total)]
                for note in notes
            ],
            [35, 80, 25, 40],
            numeric=(3,),
        ),
    ]


def _payment_instruction(pdf: Pdf, op: Operator, number: str | None) -> list[Flowable]:
    """Only on an issued invoice (a draft has no number to quote) when the operator has a
    bank account configured."""
    from reportlab.lib.units import mm
    from reportlab.platypus import Spacer

    if not (op.bank and number):
        return []
    return [Spacer(1, 4 * mm), pdf.para(f"Pay to {op.bank}, quoting {number}.", pdf.body)]


def _detail_appendix(pdf: Pdf, data: dict[str, Any]) -> list[Flowable]:
    from reportlab.platypus import PageBreak

    if not data["detail"]:
        return []
    appendix: list[Flowable] = [
        PageBreak(),
        pdf.para("Appendix: detail lines", pdf.heading),
        pdf.grid(
            ["Occurred (UTC)", "Lead", "Product", "Fee", "Entry", "Reason", "Amount"],
            [
                [
                    r["occurred_at"][:16].replace("T", " "),
                    r["lead_id"][:8],
                    r["product"],
                    r["fee_kind"],
                    r["entry_type"],
                    r["reason"],
                    amount_text(Decimal(r["amount"])),
                ]
                for r in data["detail"]
            ],
            [27, 17, 48, 16, 18, 28, 26],
            numeric=(6,),
        ),
    ]
    if data["detail_truncated"]:
        appendix.append(
            pdf.para(
                f"{data['detail_count']} lines in all: the CSV download has every one.",
                pdf.body,
            )
        )
    return appendix


def render_credit_note_pdf(note: CreditNote) -> bytes:
    """A credit note as PDF: the same parties as the invoice it corrects (as fixed when
    that invoice was issued), its lines and the amounts credited."""
    invoice = note.invoice
    document = Document(
        title=f"Credit note {note.number}",
        number=note.number,
        parties=(seller(), buyer(invoice)),
        facts=[
            ("Credit note", note.number),
            ("Corrects", invoice.number or "(draft)"),
            ("Period", period_text(invoice.first_period, invoice.period_start)),
            ("Issued", f"{note.issued_at:%Y-%m-%d}"),
            ("Reason", note.reason),
            ("Currency", note.currency),
        ],
        currency=note.currency,
        lines=[(line.description, line.quantity, line.amount) for line in note.lines.all()],
        subtotal=note.subtotal,
        tax_rate=note.tax_rate,
        tax=note.tax,
        total=note.total,
        total_label="Total credited",
    )
    return build(Pdf(), document)
