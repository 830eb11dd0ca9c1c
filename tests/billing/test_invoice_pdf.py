"""Invoice and credit-note PDFs read as a reader reads them: the text extracted from the
file (pypdf) holds the seller's and the buyer's names, addresses and tax or licence ids, the
document's number and period, every line and the totals, in reading order; and every
character printed has a glyph in the one font the PDF embeds."""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import pytest
from django.utils import timezone
from pypdf import PdfReader
from reportlab.pdfbase.ttfonts import TTFont

from billing import documents
from billing.documents import pdf_layout
from billing.models import (
    CreditNote,
    CreditNoteKind,
    CreditNoteLine,
    EntryType,
    FeeKind,
    Invoice,
    InvoiceLine,
    InvoiceStatus,
)
from partners.models import Partner
from tests.conftest import partner_client
from tests.factories import PartnerFactory, ProductFactory

SELLER_NAME = "Shenzhen Demo Operator Lending Co., Ltd."
SELLER_ADDRESS = ["1 Example Road, Nanshan District", "Shenzhen 518000, China"]
SELLER_TAX_ID = "91440300MA5EXAMPLE"


@pytest.fixture(autouse=True)
def _seller(settings: Any) -> None:
    settings.OPERATOR_NAME = SELLER_NAME
    settings.OPERATOR_ADDRESS = "\n".join(SELLER_ADDRESS)
    settings.OPERATOR_TAX_ID = SELLER_TAX_ID
    settings.OPERATOR_BANK_ACCOUNT = "Example Bank Shenzhen Branch 6222 0000 1111"


@dataclass
class Buyer:
    partner: Partner
    legal_name: str
    address: list[str]
    licence: str


def _buyer(name: str, legal_name: str, address: list[str], licence: str) -> Buyer:
    partner = PartnerFactory(
        name=name,
        legal_name=legal_name,
        billing_address="\n".join(address),
        licence_number=licence,
    )
    return Buyer(partner, legal_name, address, licence)


@pytest.fixture
def hong_kong_buyer(db: None) -> Buyer:
    return _buyer(
        "Harbour Credit",
        "Harbour Credit (HK) Limited",
        ["Unit 1201, 12/F, Example Tower", "18 Harbour Road, Wan Chai, Hong Kong"],
        "MLL 0421/2023",
    )


@pytest.fixture
def chinese_buyer(db: None) -> Buyer:
    return _buyer(
        "闪电贷",
        "深圳前海闪电小额贷款有限公司",
        ["深圳市南山区科苑路8号", "讯美科技广场3号楼12层"],
        "粤小贷 2019-088",
    )


# (product name, fee kind, entry type, quantity, amount): a reversal line is negative.
LINES = [
    ("闪电贷 Flash Loan", FeeKind.CPA, EntryType.CHARGE, 37, Decimal("9250.00")),
    ("闪电贷 Flash Loan", FeeKind.CPF, EntryType.CHARGE, 21, Decimal("9437.50")),
    ("闪电贷 Flash Loan", FeeKind.CPL, EntryType.CHARGE, 1204, Decimal("48160.00")),
    ("闪电贷 Flash Loan", FeeKind.CPL, EntryType.REVERSAL, 3, Decimal("-120.00")),
    ("Salary Advance 薪金贷", FeeKind.CPL, EntryType.CHARGE, 88, Decimal("3520.00")),
]


def _invoice(
    buyer: Buyer,
    currency: str,
    *,
    number: str | None,
    extra: list[tuple[str, FeeKind, EntryType, int, Decimal]] | None = None,
) -> Invoice:
    """A draft with lines on two products; with a ``number``, issued as issue_invoice leaves
    it: numbered, dated, the buyer's details fixed in ``bill_to``."""
    lines = LINES + (extra or [])
    products = {name: ProductFactory(partner=buyer.partner, name=name) for name, *_ in lines}
    subtotal = sum((amount for *_, amount in lines), Decimal("0"))
    tax = (subtotal * Decimal("0.06")).quantize(Decimal("0.01"))
    invoice = Invoice.objects.create(
        partner=buyer.partner,
        currency=currency,
        period_start=date(2026, 10, 1),
        first_period=date(2026, 9, 1),
        subtotal=subtotal,
        tax_rate=Decimal("0.0600"),
        tax=tax,
        total=subtotal + tax,
    )
    for name, kind, entry_type, quantity, amount in lines:
        InvoiceLine.objects.create(
            invoice=invoice,
            kind=kind,
            entry_type=entry_type,
            product=products[name],
            description=f"{name}: {FeeKind(kind).label}"
            + (" (reversals)" if entry_type == EntryType.REVERSAL else ""),
            quantity=quantity,
            amount=amount,
        )
    if number is not None:
        Invoice.objects.filter(pk=invoice.pk).update(
            status=InvoiceStatus.ISSUED,
            number=number,
            bill_to="\n".join([buyer.legal_name, *buyer.address, f"Licence {buyer.licence}"]),
            issued_at=timezone.make_aware(datetime(2026, 11, 1, 2, 0)),
            due_date=date(2026, 12, 1),
        )
        invoice.refresh_from_db()
    return invoice


def _credit_note(invoice: Invoice) -> CreditNote:
    credited = [line for line in invoice.lines.all() if line.kind == FeeKind.CPL][:2]
    subtotal = Decimal("80.00") + Decimal("1240.00")
    tax = (subtotal * invoice.tax_rate).quantize(Decimal("0.01"))
    note = CreditNote.objects.create(
        partner=invoice.partner,
        invoice=invoice,
        kind=CreditNoteKind.CORRECTIONS,
        currency=invoice.currency,
        number="CN-2026-000007",
        reason="Returns of leads billed on " + str(invoice.number),
        subtotal=subtotal,
        tax_rate=invoice.tax_rate,
        tax=tax,
        total=subtotal + tax,
        issued_at=timezone.make_aware(datetime(2026, 11, 9, 8, 30)),
    )
    for line, (quantity, amount) in zip(
        credited, [(2, Decimal("80.00")), (31, Decimal("1240.00"))], strict=True
    ):
        CreditNoteLine.objects.create(
            credit_note=note,
            kind=line.kind,
            entry_type=EntryType.CREDIT,
            product=line.product,
            description=f"{line.product.name}: {FeeKind(line.kind).label} (returns)",
            quantity=quantity,
            amount=amount,
        )
    return note


def pdf_text(pdf: bytes) -> str:
    assert pdf.startswith(b"%PDF")
    return "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(pdf)).pages)


def assert_reads_in_order(text: str, expected: list[str]) -> None:
    """Each expected string appears after the previous one (whitespace and line breaks
    between words count as one space)."""
    flat = " ".join(text.split())
    position = 0
    for item in expected:
        wanted = " ".join(item.split())
        found = flat.find(wanted, position)
        assert found >= 0, (
            f"{wanted!r} not found after {flat[max(0, position - 60) : position]!r}; "
            f"the rest reads {flat[position : position + 400]!r}"
        )
        position = found + len(wanted)


def _amount(value: Decimal) -> str:
    return f"{value:,.2f}"


def _parties(buyer: Buyer) -> list[str]:
    return [
        SELLER_NAME,
        *SELLER_ADDRESS,
        SELLER_TAX_ID,
        buyer.legal_name,
        *buyer.address,
        buyer.licence,
    ]


def _lines_and_totals(document: Invoice | CreditNote, total_label: str) -> list[str]:
    expected = []
    for line in document.lines.all():
        expected += [line.description, f"{line.quantity:,}", _amount(line.amount)]
    return [
        *expected,
        "Subtotal",
        _amount(document.subtotal),
        "VAT 6.00%",
        _amount(document.tax),
        total_label,
        document.currency,
        _amount(document.total),
    ]


# --- What a reader reads ---------------------------------------------------------------------


@pytest.mark.parametrize("currency", ["HKD", "USD", "EUR"])
def test_an_invoice_reads_parties_number_period_lines_and_totals_in_order(
    hong_kong_buyer: Buyer, currency: str
) -> None:
    invoice = _invoice(hong_kong_buyer, currency, number="INV-2026-000042")

    text = pdf_text(documents.render_pdf(invoice))

    assert "Paragraph(" not in text and "object at 0x" not in text
    assert_reads_in_order(
        text,
        [
            "Invoice INV-2026-000042",
            "From",
            SELLER_NAME,
            *SELLER_ADDRESS,
            f"Tax ID {SELLER_TAX_ID}",
            "Bill to",
            *_parties(hong_kong_buyer)[4:],
            "INV-2026-000042",
            "Period 2026-09 to 2026-10",
            "Issued 2026-11-01",
            "Due 2026-12-01",
            *_lines_and_totals(invoice, "Total due"),
        ],
    )


def test_an_invoice_to_a_partner_with_a_chinese_name_reads_in_order(
    chinese_buyer: Buyer,
) -> None:
    invoice = _invoice(chinese_buyer, "CNY", number="INV-2026-000043")

    text = pdf_text(documents.render_pdf(invoice))

    assert_reads_in_order(
        text,
        [
            "Invoice INV-2026-000043",
            *_parties(chinese_buyer),
            "Period 2026-09 to 2026-10",
            *_lines_and_totals(invoice, "Total due"),
        ],
    )
    assert "48,160.00" in text and "闪电贷 Flash Loan: Per accepted lead (reversals)" in text


def test_a_credit_note_reads_parties_number_invoice_period_lines_and_totals_in_order(
    chinese_buyer: Buyer,
) -> None:
    invoice = _invoice(chinese_buyer, "CNY", number="INV-2026-000044")
    note = _credit_note(invoice)

    text = pdf_text(documents.render_credit_note_pdf(note))

    assert_reads_in_order(
        text,
        [
            "Credit note CN-2026-000007",
            *_parties(chinese_buyer),
            "CN-2026-000007",
            "Corrects INV-2026-000044",
            "Period 2026-09 to 2026-10",
            "Issued 2026-11-09",
            note.reason,
            *_lines_and_totals(note, "Total credited"),
        ],
    )


def test_a_draft_bills_the_partners_current_details(hong_kong_buyer: Buyer) -> None:
    invoice = _invoice(hong_kong_buyer, "HKD", number=None)

    text = pdf_text(documents.render_pdf(invoice))

    assert_reads_in_order(
        text,
        ["Invoice (draft)", *_parties(hong_kong_buyer), "Period 2026-09 to 2026-10", "Draft"],
    )


def test_the_invoice_the_partner_downloads_reads_as_invoice(hong_kong_buyer: Buyer) -> None:
    invoice = _invoice(hong_kong_buyer, "HKD", number="INV-2026-000045")

    response = partner_client(hong_kong_buyer.partner).get(
        f"/api/v1/partner/invoices/{invoice.id}/pdf"
    )

    assert response.status_code == 200
    assert_reads_in_order(
        pdf_text(response.content),
        ["Invoice INV-2026-000045", *_parties(hong_kong_buyer), _amount(invoice.total)],
    )


# --- How it is printed -----------------------------------------------------------------------


def _fonts(pdf: bytes) -> list[tuple[str, bool]]:
    """(base font name, whether its glyphs are embedded) for every font any page uses."""
    found = []
    for page in PdfReader(io.BytesIO(pdf)).pages:
        for ref in page["/Resources"]["/Font"].values():
            font = ref.get_object()
            for each in [d.get_object() for d in font.get("/DescendantFonts", [])] or [font]:
                descriptor = each.get("/FontDescriptor")
                embedded = descriptor is not None and any(
                    key in descriptor.get_object() for key in ("/FontFile", "/FontFile2")
                )
                found.append((str(each["/BaseFont"]), embedded))
    return found


def test_every_character_printed_has_a_glyph_in_the_one_embedded_font(
    chinese_buyer: Buyer,
) -> None:
    invoice = _invoice(chinese_buyer, "CNY", number="INV-2026-000046")
    pdfs = [documents.render_pdf(invoice), documents.render_credit_note_pdf(_credit_note(invoice))]
    glyphs = TTFont("check", str(documents.FONT_PATH), subfontIndex=0).face.charToGlyph

    for pdf in pdfs:
        fonts = _fonts(pdf)
        text = pdf_text(pdf)
        assert fonts and all(embedded for _, embedded in fonts), fonts
        # Subsets of one font: "AAAAAA+<name>-0", "AAAAAB+<name>-1", ...
        names = {name.partition("+")[2].rpartition("-")[0] for name, _ in fonts}
        assert names == {documents.FONT_NAME}, fonts
        missing = {ch for ch in text if not ch.isspace() and ord(ch) not in glyphs}
        assert not missing, f"no glyph for {sorted(missing)}"
        assert "\ufffd" not in text


def test_a_missing_font_is_a_plain_error_naming_the_package(
    hong_kong_buyer: Buyer, monkeypatch: pytest.MonkeyPatch
) -> None:
    invoice = _invoice(hong_kong_buyer, "HKD", number="INV-2026-000047")
    documents.pdf_font.cache_clear()
    monkeypatch.setattr(pdf_layout, "FONT_PATH", pdf_layout.FONT_PATH.with_name("absent.ttc"))
    try:
        with pytest.raises(documents.DocumentFontMissing, match="apt-get install fonts-wqy"):
            documents.render_pdf(invoice)
    finally:
        documents.pdf_font.cache_clear()


def test_a_long_invoice_repeats_the_header_and_numbers_its_pages(hong_kong_buyer: Buyer) -> None:
    batches = [
        ("Salary Advance 薪金贷", FeeKind.REVSHARE, EntryType.CHARGE, 1, Decimal(f"{n}.00"))
        for n in range(100, 180)
    ]
    invoice = _invoice(hong_kong_buyer, "HKD", number="INV-2026-000048", extra=batches)

    pages = [
        page.extract_text() for page in PdfReader(io.BytesIO(documents.render_pdf(invoice))).pages
    ]

    assert len(pages) >= 2
    for number, page in enumerate(pages, start=1):
        assert f"Page {number}" in page and "INV-2026-000048" in page
    assert "Description" in pages[1]  # the lines' header again on the next page
    text = "".join(pages)
    assert all(f"{n}.00" in text for n in range(100, 180))
