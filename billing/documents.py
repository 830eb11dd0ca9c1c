"""Invoice documents: HTML (a Django template), PDF (reportlab) and a CSV of the detail
lines; credit notes as PDF. All are built from one context per document, so they always
show the same figures; the CSV streams, never holding all lines in memory.

The PDF embeds one TrueType font that has every glyph it prints (Latin, currency signs and
Chinese: partner names and addresses may be Chinese), WenQuanYi Micro Hei from Debian's
``fonts-wqy-microhei`` at a fixed path; a machine without it gets ``DocumentFontMissing``
naming the package, never a PDF with empty boxes."""

from __future__ import annotations

import csv
import functools
import io
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any
from xml.sax.saxutils import escape

from django.conf import settings
from django.template.loader import render_to_string

from billing.invoicing import _bill_to
from billing.models import CreditNote, FeeKind, Invoice
from billing.money import ZERO
from billing.periods import entries_billed_by

if TYPE_CHECKING:
    from reportlab.platypus import Flowable, Paragraph, Table

DETAIL_COLUMNS = [
    "occurred_at",
    "lead_id",
    "product",
    "fee_kind",
    "entry_type",
    "reason",
    "amount",
    "currency",
]


@dataclass(frozen=True)
class Operator:
    name: str
    address: str
    tax_id: str
    bank: str


def operator() -> Operator:
    return Operator(
        name=settings.OPERATOR_NAME,
        address=getattr(settings, "OPERATOR_ADDRESS", ""),
        tax_id=getattr(settings, "OPERATOR_TAX_ID", ""),
        bank=getattr(settings, "OPERATOR_BANK_ACCOUNT", ""),
    )


def detail_rows(invoice: Invoice) -> Iterator[list[str]]:
    rows = (
        entries_billed_by(invoice)
        .order_by("occurred_at", "id")
        .values_list(
            "occurred_at", "lead_id", "product__name", "kind", "entry_type", "reason", "amount"
        )
    )
    for occurred_at, lead_id, product, kind, entry_type, reason, amount in rows.iterator(
        chunk_size=2000
    ):
        yield [
            occurred_at.isoformat(),
            str(lead_id),
            product,
            kind,
            entry_type,
            reason,
            str(amount),
            invoice.currency,
        ]


def context(invoice: Invoice, *, detail_limit: int = 2000) -> dict[str, Any]:
    lines = list(invoice.lines.select_related("product"))
    by_kind: dict[str, Decimal] = defaultdict(lambda: ZERO)
    by_product: dict[str, Decimal] = defaultdict(lambda: ZERO)
    for line in lines:
        by_kind[FeeKind(line.kind).label] += line.amount
        by_product[line.product.name] += line.amount
    detail = []
    for index, row in enumerate(detail_rows(invoice)):
        if index >= detail_limit:
            break
        detail.append(dict(zip(DETAIL_COLUMNS, row, strict=True)))
    count = entries_billed_by(invoice).count()
    return {
        "invoice": invoice,
        "operator": operator(),
        "partner": invoice.partner,
        "bill_to": invoice.bill_to or invoice.partner.legal_name,
        "lines": lines,
        "by_kind": sorted(by_kind.items()),
        "by_product": sorted(by_product.items()),
        "credit_notes": list(invoice.credit_notes.all()),
        "detail": detail,
        "detail_count": count,
        "detail_truncated": count > len(detail),
    }


def render_html(invoice: Invoice) -> str:
    return render_to_string("billing/invoice.html", context(invoice))


def csv_stream(invoice: Invoice) -> Iterator[str]:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(DETAIL_COLUMNS)
    for row in detail_rows(invoice):
        writer.writerow(row)
        if buffer.tell() > 64_000:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()


# --- PDF -----------------------------------------------------------------------------------

# One TrueType font (not OpenType/CFF, which reportlab cannot embed) with Latin, currency
# signs and GB 18030 Chinese: installed by `apt-get install fonts-wqy-microhei` (.ci/run does).
FONT_PATH = Path("/usr/share/fonts/truetype/wqy/wqy-microhei.ttc")
FONT_PACKAGE = "fonts-wqy-microhei"
FONT_NAME = "WenQuanYiMicroHei"


class DocumentFontMissing(RuntimeError):
    """The PDF font is not installed on this machine."""


@functools.cache
def pdf_font() -> str:
    """Register the embedded font once per process and return its name."""
    from reportlab.lib.fonts import addMapping
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.ttfonts import TTFont

    if not FONT_PATH.is_file():
        raise DocumentFontMissing(
            f"invoice PDFs need the font {FONT_PATH} (Latin and Chinese glyphs): install it "
            f"with `apt-get install {FONT_PACKAGE}`"
        )
    pdfmetrics.registerFont(TTFont(FONT_NAME, str(FONT_PATH), subfontIndex=0))
    # The font has no bold or italic faces: <b> and <i> fall back to the regular face.
    for bold in (0, 1):
        for italic in (0, 1):
            addMapping(FONT_NAME, bold, italic, FONT_NAME)
    return FONT_NAME


def _amount(value: Decimal) -> str:
    return f"{value:,.2f}"


def _period(first: Any, last: Any) -> str:
    return f"{first:%Y-%m}" if first == last else f"{first:%Y-%m} to {last:%Y-%m}"


def _is_cjk(text: str) -> bool:
    return any(ord(ch) >= 0x2E80 for ch in text)


@dataclass(frozen=True)
class _Party:
    heading: str
    lines: list[str]


def _seller() -> _Party:
    op = operator()
    lines = [op.name, *op.address.splitlines()]
    if op.tax_id:
        lines.append(f"Tax ID {op.tax_id}")
    return _Party("From", [line.strip() for line in lines if line.strip()])


def _buyer(invoice: Invoice) -> _Party:
    # An issued invoice (and its credit notes) prints the details fixed when it was issued;
    # a draft shows the partner's current ones.
    text = invoice.bill_to or _bill_to(invoice.partner)
    return _Party("Bill to", [line.strip() for line in text.splitlines() if line.strip()])


@dataclass(frozen=True)
class _Document:
    """What the invoice and the credit-note PDFs have in common, in reading order."""

    title: str
    number: str  # for the page footer
    parties: tuple[_Party, _Party]
    facts: list[tuple[str, str]]  # label, value
    currency: str
    lines: list[tuple[str, int, Decimal]]  # description, quantity, amount
    subtotal: Decimal
    tax_rate: Decimal
    tax: Decimal
    total: Decimal
    total_label: str  # "Total due", "Total credited"


class _Pdf:
    """Styles and table builders over the one embedded font."""

    def __init__(self) -> None:
        from reportlab.lib.enums import TA_RIGHT
        from reportlab.lib.styles import ParagraphStyle
        from reportlab.lib.units import mm

        self.font = pdf_font()
        # A4 less 15 mm margins, less the frame's 6 pt padding on each side: tables this
        # wide line up with the paragraphs above them.
        self.width = 180 * mm - 12

        def style(name: str, size: float, **kwargs: Any) -> ParagraphStyle:
            return ParagraphStyle(
                name, fontName=self.font, fontSize=size, leading=size * 1.35, **kwargs
            )

        self.title = style("title", 17, spaceAfter=10)
        self.heading = style("heading", 11.5, spaceBefore=12, spaceAfter=5)
        self.body = style("body", 9)
        self.cell = style("cell", 8.5)
        self.cell_right = style("cell_right", 8.5, alignment=TA_RIGHT)
        self.label = style("label", 8.5, textColor="#555555")

    def para(self, text: str, style: Any) -> Paragraph:
        from reportlab.lib.styles import ParagraphStyle
        from reportlab.platypus import Paragraph

        if _is_cjk(text):  # break Chinese lines between characters, not only at spaces
            style = ParagraphStyle(f"{style.name}_cjk", parent=style, wordWrap="CJK")
        return Paragraph(escape(text).replace("\n", "<br/>"), style)

    def grid(
        self,
        header: Sequence[str],
        rows: Sequence[Sequence[str]],
        widths: Sequence[float],  # relative: scaled to the page's width
        *,
        numeric: Sequence[int] = (),
        bold_last: int = 0,
    ) -> Table:
        """A table whose every cell is a paragraph (so text wraps and never prints a
        Python repr); columns in ``numeric`` are right-aligned."""
        from reportlab.lib import colors
        from reportlab.platypus import Table, TableStyle

        def cells(values: Sequence[str]) -> list[Paragraph]:
            return [
                self.para(str(value), self.cell_right if i in numeric else self.cell)
                for i, value in enumerate(values)
            ]

        table = Table(
            [cells(header), *(cells(row) for row in rows)],
            colWidths=[self.width * w / sum(widths) for w in widths],
            repeatRows=1,
        )
        commands: list[tuple[Any, ...]] = [
            ("FONT", (0, 0), (-1, -1), self.font, 8.5),
            ("VALIGN", (0, 0), (-1, -1), "TOP"),
            ("LINEBELOW", (0, 0), (-1, 0), 0.75, colors.HexColor("#444444")),
            ("LINEBELOW", (0, 1), (-1, -1), 0.25, colors.HexColor("#cccccc")),
            ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#f0f0f0")),
            ("TOPPADDING", (0, 0), (-1, -1), 3),
            ("BOTTOMPADDING", (0, 0), (-1, -1), 3),
        ]
        if bold_last:
            commands += [
                ("LINEABOVE", (0, -bold_last), (-1, -bold_last), 0.75, colors.black),
                ("BACKGROUND", (0, -1), (-1, -1), colors.HexColor("#f7f7f7")),
            ]
        table.setStyle(TableStyle(commands))
        return table

    def parties(self, seller: _Party, buyer: _Party) -> Table:
        from reportlab.lib import colors
        from reportlab.platypus import Table, TableStyle

        def block(party: _Party) -> list[Flowable]:
            return [
                self.para(party.heading, self.label),
                *(self.para(line, self.body) for line in party.lines),
            ]

        table = Table([[block(seller), block(buyer)]], colWidths=[self.width / 2] * 2)
        table.setStyle(
            TableStyle(
                [
                    # Tables set a font even when every cell is a paragraph: ours, not Helvetica.
                    ("FONT", (0, 0), (-1, -1), self.font, 9),
                    ("VALIGN", (0, 0), (-1, -1), "TOP"),
                    ("BOX", (0, 0), (0, 0), 0.25, colors.HexColor("#999999")),
                    ("BOX", (1, 0), (1, 0), 0.25, colors.HexColor("#999999")),
                    ("TOPPADDING", (0, 0), (-1, -1), 6),
                    ("BOTTOMPADDING", (0, 0), (-1, -1), 6),
                    ("LEFTPADDING", (0, 0), (-1, -1), 6),
                ]
            )
        )
        return table

    def facts(self, facts: list[tuple[str, str]]) -> Table:
        from reportlab.platypus import Table, TableStyle

        table = Table(
            [[self.para(label, self.label), self.para(value, self.body)] for label, value in facts],
            colWidths=[self.width * 0.18, self.width * 0.82],
        )
        table.setStyle(
            TableStyle(
                [
                    ("FONT", (0, 0), (-1, -1), self.font, 9),
                    ("VALIGN", (0, 0), (-1, -1), "TOP"),
                    ("TOPPADDING", (0, 0), (-1, -1), 1),
                    ("BOTTOMPADDING", (0, 0), (-1, -1), 1),
                    ("LEFTPADDING", (0, 0), (-1, -1), 0),
                ]
            )
        )
        return table


def _build(pdf: _Pdf, document: _Document, extra: Sequence[Flowable] = ()) -> bytes:
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.units import mm
    from reportlab.platypus import SimpleDocTemplate, Spacer

    money = document.currency
    story: list[Flowable] = [
        pdf.para(document.title, pdf.title),
        pdf.parties(*document.parties),
        Spacer(1, 5 * mm),
        pdf.facts(document.facts),
        pdf.para("Lines", pdf.heading),
        pdf.grid(
            ["Description", "Quantity", f"Amount ({money})"],
            [
                *([d, f"{q:,}", _amount(a)] for d, q, a in document.lines),
                ["Subtotal", "", _amount(document.subtotal)],
                [f"VAT {document.tax_rate * 100:.2f}%", "", _amount(document.tax)],
                [f"{document.total_label} ({money})", "", _amount(document.total)],
            ],
            [115, 20, 45],
            numeric=(1, 2),
            bold_last=3,
        ),
        *extra,
    ]
    op = operator()

    def footer(canvas: Any, doc: Any) -> None:
        canvas.saveState()
        canvas.setFont(pdf.font, 7.5)
        canvas.setFillGray(0.4)
        canvas.drawString(15 * mm, 10 * mm, f"{op.name} — {document.number}")
        canvas.drawRightString(195 * mm, 10 * mm, f"Page {doc.page}")
        canvas.restoreState()

    out = io.BytesIO()
    SimpleDocTemplate(
        out,
        pagesize=A4,
        leftMargin=15 * mm,
        rightMargin=15 * mm,
        topMargin=15 * mm,
        bottomMargin=18 * mm,
        title=document.title,
        author=op.name,
        initialFontName=pdf.font,  # else every page names Helvetica, a font we never embed
    ).build(story, onFirstPage=footer, onLaterPages=footer)
    return out.getvalue()


def render_pdf(invoice: Invoice) -> bytes:
    """An invoice as PDF: the parts every document has (parties, facts, lines and
    totals), then the summaries, any credit notes, how to pay and the detail appendix."""
    data = context(invoice)
    document = _invoice_document(invoice, data)
    pdf = _Pdf()
    money = invoice.currency
    extra = [
        *_summaries(pdf, data, money),
        *_credit_notes(pdf, data["credit_notes"], money),
        *_payment_instruction(pdf, data["operator"], invoice.number),
        *_detail_appendix(pdf, data),
    ]
    return _build(pdf, document, extra)


def _invoice_document(invoice: Invoice, data: dict[str, Any]) -> _Document:
    number = invoice.number or "(draft)"
    facts = [("Invoice", number), ("Period", _period(invoice.first_period, invoice.period_start))]
    if invoice.issued_at:
        facts += [
            ("Issued", f"{invoice.issued_at:%Y-%m-%d}"),
            ("Due", f"{invoice.due_date:%Y-%m-%d}" if invoice.due_date else "-"),
        ]
    facts += [("Status", invoice.get_status_display()), ("Currency", invoice.currency)]
    return _Document(
        title=f"Invoice {number}",
        number=number,
        parties=(_seller(), _buyer(invoice)),
        facts=facts,
        currency=invoice.currency,
        lines=[(line.description, line.quantity, line.amount) for line in data["lines"]],
        subtotal=invoice.subtotal,
        tax_rate=invoice.tax_rate,
        tax=invoice.tax,
        total=invoice.total,
        total_label="Total due",
    )


def _summaries(pdf: _Pdf, data: dict[str, Any], money: str) -> list[Flowable]:
    return [
        pdf.para("Summary by fee type", pdf.heading),
        pdf.grid(
            ["Fee type", f"Amount ({money})"],
            [[name, _amount(amount)] for name, amount in data["by_kind"]],
            [135, 45],
            numeric=(1,),
        ),
        pdf.para("Summary by product", pdf.heading),
        pdf.grid(
            ["Product", f"Amount ({money})"],
            [[name, _amount(amount)] for name, amount in data["by_product"]],
            [135, 45],
            numeric=(1,),
        ),
    ]


def _credit_notes(pdf: _Pdf, notes: Sequence[CreditNote], money: str) -> list[Flowable]:
    if not notes:
        return []
    return [
        pdf.para("Credit notes against this invoice", pdf.heading),
        pdf.grid(
            ["Number", "Reason", "Issued", f"Credited ({money})"],
            [
                [note.number, note.reason, f"{note.issued_at:%Y-%m-%d}", _amount(note.total)]
                for note in notes
            ],
            [35, 80, 25, 40],
            numeric=(3,),
        ),
    ]


def _payment_instruction(pdf: _Pdf, op: Operator, number: str | None) -> list[Flowable]:
    """Only on an issued invoice (a draft has no number to quote) when the operator has a
    bank account configured."""
    from reportlab.lib.units import mm
    from reportlab.platypus import Spacer

    if not (op.bank and number):
        return []
    return [Spacer(1, 4 * mm), pdf.para(f"Pay to {op.bank}, quoting {number}.", pdf.body)]


def _detail_appendix(pdf: _Pdf, data: dict[str, Any]) -> list[Flowable]:
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
                    _amount(Decimal(r["amount"])),
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
    document = _Document(
        title=f"Credit note {note.number}",
        number=note.number,
        parties=(_seller(), _buyer(invoice)),
        facts=[
            ("Credit note", note.number),
            ("Corrects", invoice.number or "(draft)"),
            ("Period", _period(invoice.first_period, invoice.period_start)),
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
    return _build(_Pdf(), document)
