"""GET /api/v1/partner/invoices: a partner reads its own issued invoices, nothing else."""

from __future__ import annotations

from datetime import timedelta

from django.utils import timezone
from rest_framework.test import APIClient

from billing.invoicing import generate_invoices, issue_invoice
from billing.models import Invoice
from partners.keys import issue_api_key
from partners.models import Partner
from tests.billing.builders import LeadBuilder, current_period, post, report, schedule
from tests.conftest import partner_client
from tests.factories import PartnerFactory, ProductFactory, TrafficSourceFactory

LIST_URL = "/api/v1/partner/invoices"


def detail_url(invoice: Invoice) -> str:
    return f"{LIST_URL}/{invoice.pk}"


def invoices_for(leads: LeadBuilder, *partners: Partner) -> dict[Partner, Invoice]:
    """A draft per partner for this month: an accepted and approved lead (CPL 40 + CPA 250)."""
    for partner in partners:
        schedule(partner)
        lead = leads.lead(product=ProductFactory(partner=partner, name="Cash loan"))
        for event_type in ["accepted", "approved"]:
            post(lead, report(event_type, timezone.now() - timedelta(hours=1)))
    made = generate_invoices(period=current_period())
    return {invoice.partner: invoice for invoice in made}


def test_a_partner_lists_only_its_own_issued_invoices(leads: LeadBuilder) -> None:
    mine, draft_owner, theirs = PartnerFactory(), PartnerFactory(), PartnerFactory()
    invoices = invoices_for(leads, mine, draft_owner, theirs)
    issued = issue_invoice(invoice_id=invoices[mine].pk)
    issue_invoice(invoice_id=invoices[theirs].pk)

    response = partner_client(mine).get(LIST_URL)

    assert response.status_code == 200
    assert [row["id"] for row in response.json()["results"]] == [str(issued.pk)]
    assert response.json()["results"][0]["number"] == issued.number


def test_drafts_are_hidden_from_the_partner(leads: LeadBuilder) -> None:
    partner = PartnerFactory()
    draft = invoices_for(leads, partner)[partner]
    client = partner_client(partner)

    listed = client.get(LIST_URL)
    detail = client.get(detail_url(draft))

    assert listed.status_code == 200
    assert listed.json()["results"] == []
    assert detail.status_code == 404


def test_another_partners_invoice_is_not_found(leads: LeadBuilder) -> None:
    mine, theirs = PartnerFactory(), PartnerFactory()
    invoices = invoices_for(leads, mine, theirs)
    issue_invoice(invoice_id=invoices[mine].pk)
    their_invoice = issue_invoice(invoice_id=invoices[theirs].pk)

    response = partner_client(mine).get(detail_url(their_invoice))

    assert response.status_code == 404
    error = response.json()["error"]
    assert set(error) == {"code", "message", "details"}
    assert error["code"] == "not_found"
    assert error["message"]
    assert error["details"] == {}
    assert their_invoice.number not in response.content.decode()


def test_amounts_are_strings_with_two_decimals(leads: LeadBuilder) -> None:
    partner = PartnerFactory()
    invoice = issue_invoice(invoice_id=invoices_for(leads, partner)[partner].pk)

    body = partner_client(partner).get(detail_url(invoice)).json()

    assert (body["subtotal"], body["tax"], body["total"]) == ("290.00", "17.40", "307.40")
    assert body["tax_rate"] == "0.0600"
    assert body["currency"] == "CNY"
    assert body["status"] == "issued"
    assert [(line["kind"], line["quantity"], line["amount"]) for line in body["lines"]] == [
        ("cpa", 1, "250.00"),
        ("cpl", 1, "40.00"),
    ]


def test_a_source_key_cannot_read_invoices(leads: LeadBuilder) -> None:
    partner = PartnerFactory()
    issue_invoice(invoice_id=invoices_for(leads, partner)[partner].pk)
    client = APIClient()
    key = issue_api_key(source=TrafficSourceFactory()).plaintext
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")

    response = client.get(LIST_URL)

    assert response.status_code == 403
    assert response.json()["error"]["code"] == "permission_denied"
