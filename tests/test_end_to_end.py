"""The whole path over real HTTP: intake -> vault and consent -> match -> signed post to a
partner lender (simulator on loopback) -> the partner's outcome events back through the
partner API -> charges -> monthly invoice read by the partner through the API."""

from __future__ import annotations

import logging
from decimal import Decimal

import httpx
from django.core.management import call_command
from django.utils import timezone

from billing.models import Charge, Invoice, InvoiceLine
from consent.ledger import verify_ledger
from consent.models import Disclosure, LedgerEntry
from marketplace.models import DeliveryAttempt, EventType, Lead, LeadStatus
from partners.keys import issue_api_key
from tests.factories import TrafficSourceFactory, published_consent_text, referral_payload


def test_referral_becomes_lead_events_charges_and_invoice(live_server, simulator_factory, caplog):
    caplog.set_level(logging.DEBUG)  # everything any logger emits, in every thread
    published_consent_text()
    source_key = issue_api_key(source=TrafficSourceFactory()).plaintext
    sim = simulator_factory(
        api_base_url=live_server.url, accept_rate=1.0, approval_rate=1.0, funding_rate=1.0
    )
    payload = referral_payload()
    with httpx.Client(base_url=live_server.url, timeout=30) as client:
        response = client.post(
            "/api/v1/referrals",
            json=payload,
            headers={"Authorization": f"Bearer {source_key}", "Idempotency-Key": "e2e-1"},
        )
        assert response.status_code == 201, response.text
        referral = response.json()
        assert referral["status"] == "routed"
        assert referral["consent_receipt"]["status"] == "active"
        (lead_summary,) = referral["leads"]

        # The partner got one signed post carrying the applicant and the consent evidence.
        assert sim.simulator.wait_idle(timeout=20)
        stats = sim.simulator.stats()[sim.partner.slug]
        assert stats["posts"] == 1 and stats["bad_signatures"] == 0
        (post,) = sim.simulator.received(sim.partner.slug)["posts"]
        assert post["applicant"]["national_id"] == payload["applicant"]["national_id"]
        assert post["consent"]["receipt_id"] == referral["consent_receipt"]["receipt_id"]
        assert stats["events_sent"] == 3 and stats["events_failed"] == 0

        lead = Lead.objects.get(pk=lead_summary["id"])
        assert lead.status == LeadStatus.FUNDED
        assert set(lead.events.values_list("type", flat=True)) == {
            EventType.ACCEPTED,
            EventType.APPROVED,
            EventType.FUNDED,
        }
        assert DeliveryAttempt.objects.get(lead=lead).outcome == "success"
        disclosure = Disclosure.objects.get(reference=f"lead:{lead.id}")
        assert disclosure.partner_id == sim.partner.id

        charges = {c.kind: c.amount for c in Charge.objects.filter(lead=lead)}
        principal = lead.funded_principal
        assert charges == {
            "cpl": Decimal("40.00"),
            "cpa": Decimal("250.00"),
            "cpf": max(Decimal("50.00"), (principal * Decimal("0.03")).quantize(Decimal("0.01"))),
        }

        call_command("generate_invoices", "--period", timezone.now().strftime("%Y-%m"), "--issue")
        invoice = Invoice.objects.get(partner=sim.partner)
        assert invoice.number.startswith(f"INV-{timezone.now().year}-")
        assert set(InvoiceLine.objects.filter(invoice=invoice).values_list("kind", flat=True)) == {
            "cpl",
            "cpa",
            "cpf",
        }
        assert invoice.subtotal == sum(charges.values())

        partner_headers = {"Authorization": f"Bearer {sim.api_key}"}
        listed = client.get("/api/v1/partner/invoices", headers=partner_headers).json()
        assert [i["number"] for i in listed["results"]] == [invoice.number]
        assert listed["results"][0]["total"] == str(invoice.total)

    assert LedgerEntry.objects.filter(kind="data.disclosed").count() == 1
    assert verify_ledger().ok
    # No personal value reached any log line on the way.
    personal = [str(v) for v in payload["applicant"].values()]
    assert caplog.records, "logging was captured"
    leaked = [v for v in personal if v in caplog.text]
    assert leaked == []
