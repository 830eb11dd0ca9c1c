"""PDF layout over reportlab, shared by invoices and credit notes: the one embedded font,
paragraph styles, tables that wrap (every cell a paragraph), and ``build``, which lays out
what every document has (title, parties, facts, lines and totals) and a page footer.

The PDF embeds one TrueType font that has every glyph it prints (Latin, currency signs and
Chinese: partner names and addresses may be Chinese), WenQuanYi Micro Hei from Debian's
``fonts-wqy-microhei`` at a fixed path; a machine without it gets ``DocumentFontMissing``
naming the package, never a PDF with empty boxes. reportlab is imported where it is used,
so loading billing (the API, the admin) does not load it."""

from __future__ import annotations

import functools
import io
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any
from xml.sax.saxutils import escape

from billing.documents.html_csv import operator
from billing.invoicing.issuing import _bill_to
from billing.models import Invoice

if TYPE_CHECKING:
    from reportlab.platypus import Flowable, Paragraph, Table

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


def amount_text(value: Decimal) -> str:
    return f"{value:,.2f}"


def period_text(first: Any, last: Any) -> str:
    return f"{first:%Y-%m}" if first == last else f"{first:%Y-%m} to {last:%Y-%m}"


def is_cjk(text: str) -> bool:
    return any(ord(ch) >= 0x2E80 for ch in text)


@dataclass(frozen=True)
class Party:
    heading: str
    lines: list[str]


def seller() -> Party:
    op = operator()
    lines = [op.name, *op.address.splitlines()]
    if op.tax_id:
        lines.append(f"Tax ID {op.tax_id}")
    return Party("From", [line.strip() for line in lines if line.strip()])


def buyer(invoice: Invoice) -> Party:
    # An issued invoice (and its credit notes) prints the details fixed when it was issued;
    # a draft shows the partner's current ones.
    text = invoice.bill_to or _bill_to(invoice.partner)
    return Party("Bill to", [line.strip() for line in text.splitlines() if line.strip()])


@dataclass(frozen=True)
class Document:
    """What the invoice and the credit-note PDFs have in common, in reading order."""

    title: str
    number: str  # for the page footer
    parties: tuple[Party, Party]
    facts: list[tuple[str, str]]  # label, value
    currency: str
    lines: list[tuple[str, int, Decimal]]  # description, quantity, amount
    subtotal: Decimal
    tax_rate: Decimal
    tax: Decimal
    total: Decimal
    total_label: str  # "Total due", "Total credited"


class Pdf:
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

        if is_cjk(text):  # break Chinese lines between characters, not only at spaces
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

    def parties(self, seller: Party, buyer: Party) -> Table:
        from reportlab.lib import colors
        from reportlab.platypus import Table, TableStyle

        def block(party: Party) -> list[Flowable]:
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


def build(pdf: Pdf, document: Document, extra: Sequence[Flowable] = ()) -> bytes:
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
                *([d, f"{q:,}", amount_text(a)] for d, q, a in document.lines),
                ["Subtotal", "", amount_text(document.subtotal)],
                [f"VAT {document.tax_rate * 100:.2f}%", "", amount_text(document.tax)],
                [f"{document.total_label} ({money})", "", amount_text(document.total)],
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
