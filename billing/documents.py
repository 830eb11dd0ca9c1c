"""Invoice documents: HTML (a Django template), PDF (reportlab, pure Python, no system
libraries) and a CSV of the detail lines. All three are built from one context, so they
always show the same figures; the CSV streams, never holding all lines in memory."""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.template.loader import render_to_string

from billing.invoicing import invoice_charges
from billing.models import FeeKind, Invoice
from billing.money import ZERO

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
        invoice_charges(invoice)
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
    count = invoice_charges(invoice).count()
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


def render_pdf(invoice: Invoice) -> bytes:
    from reportlab.lib import colors
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.styles import getSampleStyleSheet
    from reportlab.lib.units import mm
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.cidfonts import UnicodeCIDFont
    from reportlab.platypus import (
        PageBreak,
        Paragraph,
        SimpleDocTemplate,
        Spacer,
        Table,
        TableStyle,
    )

    # A built-in CJK font: partner names and addresses may be Chinese; no font files needed.
    pdfmetrics.registerFont(UnicodeCIDFont("STSong-Light"))
    data = context(invoice)
    styles = getSampleStyleSheet()
    for style in styles.byName.values():
        style.fontName = "STSong-Light"
    body, heading = styles["BodyText"], styles["Heading2"]
    money = invoice.currency
    grid = TableStyle(
        [
            ("FONT", (0, 0), (-1, -1), "STSong-Light", 8),
            ("GRID", (0, 0), (-1, -1), 0.25, colors.grey),
            ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#eeeeee")),
            ("ALIGN", (-1, 0), (-1, -1), "RIGHT"),
        ]
    )

    def table(rows: list[list[Any]], widths: list[float] | None = None) -> Table:
        t = Table([[str(c) for c in row] for row in rows], colWidths=widths, repeatRows=1)
        t.setStyle(grid)
        return t

    def para(text: str) -> Paragraph:
        return Paragraph(text.replace("\n", "<br/>"), body)

    op = data["operator"]
    title = f"Invoice {invoice.number or '(draft)'}"
    story: list[Any] = [
        Paragraph(title, styles["Title"]),
        table(
            [
                ["From", "Bill to"],
                [
                    para(f"{op.name}\n{op.address}\nTax ID {op.tax_id}"),
                    para(data["bill_to"]),
                ],
            ],
            [90 * mm, 90 * mm],
        ),
        Spacer(1, 4 * mm),
        para(
            f"Period {invoice.first_period:%Y-%m} to {invoice.period_start:%Y-%m} &nbsp; "
            f"Issued {invoice.issued_at:%Y-%m-%d} &nbsp; Due {invoice.due_date} &nbsp; "
            f"Status {invoice.get_status_display()}"
            if invoice.issued_at
            else f"Period {invoice.period_start:%Y-%m} (draft)"
        ),
        Paragraph("Lines", heading),
        table(
            [["Description", "Quantity", f"Amount ({money})"]]
            + [[line.description, line.quantity, line.amount] for line in data["lines"]]
            + [
                ["Subtotal", "", invoice.subtotal],
                [f"VAT {invoice.tax_rate * 100:.2f}%", "", invoice.tax],
                ["Total", "", invoice.total],
            ],
            [110 * mm, 25 * mm, 45 * mm],
        ),
        Paragraph("Summary by fee type", heading),
        table(
            [["Fee type", f"Amount ({money})"]] + [list(r) for r in data["by_kind"]],
            [135 * mm, 45 * mm],
        ),
        Paragraph("Summary by product", heading),
        table(
            [["Product", f"Amount ({money})"]] + [list(r) for r in data["by_product"]],
            [135 * mm, 45 * mm],
        ),
    ]
    if op.bank:
        story.append(para(f"Pay to {op.bank}, quoting {invoice.number}."))
    story += [PageBreak(), Paragraph("Appendix: detail lines", heading)]
    story.append(
        table(
            [["Occurred (UTC)", "Lead", "Product", "Fee", "Entry", "Reason", "Amount"]]
            + [
                [
                    r["occurred_at"][:16],
                    r["lead_id"][:8],
                    r["product"],
                    r["fee_kind"],
                    r["entry_type"],
                    r["reason"],
                    r["amount"],
                ]
                for r in data["detail"]
            ]
        )
    )
    if data["detail_truncated"]:
        story.append(para(f"{data['detail_count']} lines in all: the CSV download has every one."))
    out = io.BytesIO()
    SimpleDocTemplate(out, pagesize=A4, title=title, author=op.name).build(story)
    return out.getvalue()
