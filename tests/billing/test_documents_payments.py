"""Credit notes, voiding, immutability, payments, statements, credit limits, documents,
the partner API and reconciliation."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.core.management import CommandError, call_command
from django.db import IntegrityError, transaction
from django.utils import timezone

from billing.credit import HOLD_REASON, evaluate_credit_limit
from billing.invoicing import generate_invoices, void_invoice
from billing.models import (
    CreditNote,
    Invoice,
    InvoiceLine,
    InvoiceStatus,
    IssuedInvoiceError,
    PartnerBillingProfile,
)
from billing.payments import PaymentError, allocate_payment, record_payment
from billing.statements import bucket_for, statement
from partners.holds import place_hold
from partners.models import HoldReason, Partner
from partners.webhook_delivery import WebhookMessage
from partners.webhook_signing import create_endpoint
from tests.billing.builders import LeadBuilder, current_period, post, report, schedule
from tests.conftest import partner_client
from tests.factories import PartnerFactory
from tests.holds import held_for


def ago(hours: float = 1) -> timezone.datetime:
    return timezone.now() - timedelta(hours=hours)


def issued_for(leads: LeadBuilder, partner: Partner, *events: str) -> Invoice:
    lead = leads.lead(partner=partner)
    for n, kind in enumerate(events):
        post(lead, report(kind, ago(5 - n), external_id=f"{lead.id}-{kind}"))
    (invoice,) = generate_invoices(period=current_period(), issue=True)
    return invoice


def test_a_return_after_issue_makes_a_credit_note_not_an_edit(
    leads: LeadBuilder, partner: Partner
) -> None:
    invoice = issued_for(leads, partner, "accepted", "approved")
    lead = invoice.partner.leads.get()
    total = invoice.total

    post(lead, report("returned", ago(1)))
    assert generate_invoices(period=current_period(), issue=True) == []

    note = CreditNote.objects.get(invoice=invoice)
    invoice.refresh_from_db()
    assert note.number == f"CN-{timezone.now().year}-000001"
    assert note.subtotal == Decimal("290.00") and note.total == Decimal("307.40")
    assert invoice.total == total  # the invoice itself never changes
    assert statement(partner_id=partner.pk, currency="CNY").balance == total - note.total


def test_voiding_issues_a_full_credit_note_and_a_rerun_replaces_the_invoice(
    leads: LeadBuilder, partner: Partner
) -> None:
    invoice = issued_for(leads, partner, "accepted")

    note = void_invoice(invoice_id=invoice.id, reason="wrong legal name")
    (replacement,) = generate_invoices(period=current_period(), issue=True)

    invoice.refresh_from_db()
    assert invoice.status == InvoiceStatus.VOID and note.total == invoice.total
    assert replacement.total == invoice.total and replacement.number != invoice.number


def test_an_issued_invoice_and_its_lines_cannot_be_edited_or_deleted(
    leads: LeadBuilder, partner: Partner
) -> None:
    invoice = issued_for(leads, partner, "accepted")

    with pytest.raises(IssuedInvoiceError):
        Invoice.objects.filter(pk=invoice.pk).update(subtotal=Decimal("1.00"))
    with pytest.raises(IssuedInvoiceError):
        invoice.delete()
    with pytest.raises(IssuedInvoiceError):
        InvoiceLine.objects.filter(invoice=invoice).update(amount=Decimal("1.00"))
    with pytest.raises(IssuedInvoiceError):
        InvoiceLine.objects.filter(invoice=invoice).delete()


@pytest.mark.postgres
def test_the_database_refuses_to_edit_an_issued_invoice(
    leads: LeadBuilder, partner: Partner
) -> None:
    invoice = issued_for(leads, partner, "accepted")
    invoice.subtotal = Decimal("1.00")
    invoice.total = Decimal("1.00") + invoice.tax

    with pytest.raises(Exception, match="cannot be edited"), transaction.atomic():
        invoice.save()


def test_issuing_sends_an_invoice_issued_webhook(leads: LeadBuilder, partner: Partner) -> None:
    create_endpoint(partner=partner, url="https://partner.example/hooks")

    invoice = issued_for(leads, partner, "accepted")

    message = WebhookMessage.objects.get(partner=partner, event_type="invoice.issued")
    assert message.payload["data"]["number"] == invoice.number


def test_payments_settle_invoices_oldest_first_and_are_idempotent(
    leads: LeadBuilder, partner: Partner
) -> None:
    invoice = issued_for(leads, partner, "accepted")  # 40 + 6% = 42.40
    received = timezone.now()

    payment, created = record_payment(
        partner_id=partner.pk,
        currency="CNY",
        amount="20.00",
        received_at=received,
        bank_reference="B-1",
    )
    again, created_again = record_payment(
        partner_id=partner.pk,
        currency="CNY",
        amount="20.00",
        received_at=received,
        bank_reference="B-1",
    )
    invoice.refresh_from_db()
    assert (created, created_again, again.pk) == (True, False, payment.pk)
    assert invoice.status == InvoiceStatus.PARTLY_PAID

    record_payment(
        partner_id=partner.pk,
        currency="CNY",
        amount="30.00",
        received_at=received,
        bank_reference="B-2",
    )
    invoice.refresh_from_db()
    result = statement(partner_id=partner.pk, currency="CNY")
    assert invoice.status == InvoiceStatus.PAID
    assert (result.balance, result.unapplied) == (Decimal("-7.60"), Decimal("7.60"))
    with pytest.raises(PaymentError, match="recorded already"):
        record_payment(
            partner_id=partner.pk,
            currency="CNY",
            amount="31.00",
            received_at=received,
            bank_reference="B-2",
        )


def test_manual_allocation_cannot_exceed_the_payment_or_the_invoice(
    leads: LeadBuilder, partner: Partner
) -> None:
    invoice = issued_for(leads, partner, "accepted")
    payment, _ = record_payment(
        partner_id=partner.pk,
        currency="CNY",
        amount="100.00",
        received_at=timezone.now(),
        bank_reference="B-9",
        allocate=False,
    )

    with pytest.raises(PaymentError, match=r"only CNY 42\.40 open"):
        allocate_payment(payment_id=payment.pk, allocations=[(invoice.id, "50.00")])
    allocate_payment(payment_id=payment.pk, allocations=[(invoice.id, "42.40")])
    invoice.refresh_from_db()
    assert invoice.status == InvoiceStatus.PAID


@pytest.mark.parametrize(
    ("days", "bucket"),
    [(-1, "current"), (0, "0-30"), (30, "0-30"), (31, "31-60"), (61, "61-90"), (91, "90+")],
)
def test_aging_buckets_count_days_past_due(days: int, bucket: str) -> None:
    assert bucket_for(days) == bucket


def test_the_credit_limit_holds_and_releases_routing(leads: LeadBuilder, partner: Partner) -> None:
    PartnerBillingProfile.objects.create(partner=partner, credit_limit=Decimal("100.00"))
    invoice = issued_for(leads, partner, "accepted", "approved")  # 290 + VAT

    assert held_for(partner) == {HOLD_REASON}

    record_payment(
        partner_id=partner.pk,
        currency="CNY",
        amount=str(invoice.total),
        received_at=timezone.now(),
        bank_reference="B-3",
    )
    assert held_for(partner) == set()


def test_a_hold_set_by_ops_is_not_released_by_billing(partner: Partner) -> None:
    PartnerBillingProfile.objects.create(partner=partner, credit_limit=Decimal("100.00"))
    place_hold(partner_id=partner.pk, reason=HoldReason.OPS_PAUSE, note="compliance review")

    assert evaluate_credit_limit(partner_id=partner.pk) is False
    assert held_for(partner) == {HoldReason.OPS_PAUSE}


def test_a_partner_downloads_its_pdf_csv_html_and_statement(
    leads: LeadBuilder, partner: Partner
) -> None:
    invoice = issued_for(leads, partner, "accepted", "approved")
    client = partner_client(partner)
    base = f"/api/v1/partner/invoices/{invoice.id}"

    pdf = client.get(f"{base}/pdf")
    csv_body = b"".join(client.get(f"{base}/csv").streaming_content).decode()
    html = client.get(f"{base}/html").content.decode()
    body = client.get("/api/v1/partner/statement").json()

    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF")
    assert (
        csv_body.splitlines()[0].startswith("occurred_at,lead_id")
        and len(csv_body.splitlines()) == 3
    )
    assert (
        invoice.number in html
        and "Summary by fee type" in html
        and "http" not in html.split("<body>")[0]
    )
    assert body["balance"] == str(invoice.total) and body["aging"]["current"] == str(invoice.total)


def test_another_partners_documents_are_not_found(leads: LeadBuilder, partner: Partner) -> None:
    invoice = issued_for(leads, partner, "accepted")
    other = partner_client(PartnerFactory())

    for suffix in ("pdf", "csv", "html"):
        response = other.get(f"/api/v1/partner/invoices/{invoice.id}/{suffix}")
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "not_found"


def test_reconcile_passes_on_a_clean_month_and_fails_on_a_difference(
    leads: LeadBuilder, partner: Partner
) -> None:
    issued_for(leads, partner, "accepted", "approved")
    call_command("reconcile", "--period", current_period().__str__())

    # A draft line edited by hand so it disagrees with its charges (issuing it is refused).
    other = PartnerFactory()
    schedule(other)
    lead = leads.lead(partner=other)
    post(lead, report("accepted", ago(2)))
    generate_invoices(period=current_period())
    draft = Invoice.objects.get(partner=other)
    InvoiceLine.objects.filter(invoice=draft).update(amount=Decimal("39.99"))

    with pytest.raises(CommandError, match="difference"):
        call_command("reconcile", "--period", str(current_period()))


def test_reconcile_refuses_a_future_month() -> None:
    with pytest.raises(CommandError, match="future"):
        call_command("reconcile", "--period", "2999-01")


def test_the_total_check_rejects_a_credit_note_a_cent_off(
    leads: LeadBuilder, partner: Partner
) -> None:
    invoice = issued_for(leads, partner, "accepted")
    with pytest.raises(IntegrityError), transaction.atomic():
        CreditNote.objects.create(
            partner=partner,
            invoice=invoice,
            kind="void",
            currency="CNY",
            number="CN-X",
            reason="x",
            subtotal=Decimal("1.00"),
            tax_rate=Decimal("0.06"),
            tax=Decimal("0.06"),
            total=Decimal("1.07"),
            issued_at=timezone.now(),
        )
