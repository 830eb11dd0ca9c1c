"""What an invoice shows, computed once for every format (``context``: lines, summaries by
fee type and product, credit notes, the first detail lines), and its two text formats: the
HTML page (a Django template over the context) and the CSV of every detail line, streamed
so it never holds all lines in memory."""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from csp.constants import NONE, UNSAFE_INLINE
from csp.decorators import csp
from django.conf import settings
from django.template.loader import render_to_string

from billing.models import FeeKind, Invoice
from billing.money import ZERO
from billing.periods import entries_billed_by

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


# The HTML invoice's own Content-Security-Policy: it runs no script, loads nothing and sends
# no form; its one style is the template's <style> block (kept inline so a saved copy still
# reads as printed). Every view that serves render_html's page is wrapped in it.
html_document_policy = csp(
    {
        "default-src": [NONE],
        "style-src": [UNSAFE_INLINE],
        "img-src": ["data:"],
        "base-uri": [NONE],
        "form-action": [NONE],
        "frame-ancestors": [NONE],
    }
)


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
