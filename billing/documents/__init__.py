"""Invoice documents: HTML (a Django template), PDF (reportlab) and a CSV of the detail
lines; credit notes as PDF. All are built from one context per document
(``html_csv.context``), so they always show the same figures.

- ``html_csv``: the context, the HTML page and the streamed CSV;
- ``pdf_layout``: the embedded font, styles, tables and the page layout every PDF shares;
- ``pdf``: the invoice PDF (``render_pdf``) and the credit-note PDF."""

from billing.documents.html_csv import (
    DETAIL_COLUMNS,
    Operator,
    context,
    csv_stream,
    detail_rows,
    html_document_policy,
    operator,
    render_html,
)
from billing.documents.pdf import render_credit_note_pdf, render_pdf
from billing.documents.pdf_layout import FONT_NAME, FONT_PATH, DocumentFontMissing, pdf_font

__all__ = [
    "DETAIL_COLUMNS",
    "FONT_NAME",
    "FONT_PATH",
    "DocumentFontMissing",
    "Operator",
    "context",
    "csv_stream",
    "detail_rows",
    "html_document_policy",
    "operator",
    "pdf_font",
    "render_credit_note_pdf",
    "render_html",
    "render_pdf",
]
