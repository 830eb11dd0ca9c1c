"""Key mode is an isolation dimension: what the walk in ``test_partner_isolation`` cannot
see. Consent given through a sandbox key is sandbox consent (its withdrawal, deletion
requests and webhooks too); a sandbox key refused on live data writes nothing; products
change only with a live key; billing is live only; every ledger entry written through the
API names the key that acted (lookup prefix and mode), and the ledger still verifies."""

from __future__ import annotations

import importlib
import json
from typing import Any

import pytest
from django.apps import apps
from rest_framework.test import APIClient

from consent import gate, ledger, sequencer
from consent.models import ConsentGrant, DeletionRequest, LedgerEntry
from marketplace.models import Lead, LeadStatus, Referral
from partners.keys import issue_api_key
from partners.models import ApiKey, KeyMode, Partner, ProductChangeRequest, WebhookMessage
from partners.webhook_signing import create_endpoint
from tests.conftest import partner_client
from tests.factories import PartnerFactory, ProductFactory, TrafficSourceFactory, referral_payload
from tests.marketplace.conftest import set_lead_status

pytestmark = pytest.mark.django_db


@pytest.fixture
def partner(consent_text: object) -> Partner:
    """A product and a webhook endpoint: leads and webhook messages in both key modes."""
    partner = PartnerFactory()
    ProductFactory(partner=partner)
    create_endpoint(partner=partner, url="http://127.0.0.1:9/hooks")
    return partner


class Source:
    """A traffic source calling the API with one key of a given mode."""

    def __init__(self, mode: str) -> None:
        self.source = TrafficSourceFactory()
        issued = issue_api_key(source=self.source, mode=mode)
        self.key: ApiKey = issued.api_key
        self.client = APIClient()
        self.client.credentials(HTTP_AUTHORIZATION=f"Bearer {issued.plaintext}")

    def refer(self) -> Referral:
        response = self.client.post("/api/v1/referrals", referral_payload(), format="json")
        assert response.status_code == 201, response.content
        return Referral.objects.get(pk=response.json()["id"])

    def withdraw(self, referral: Referral) -> Any:
        return self.client.post(f"/api/v1/consents/{referral.grant_id}/withdraw", {}, format="json")


def delivered_to(referral: Referral, partner: Partner) -> Lead:
    """``partner``'s lead of ``referral``, delivered (its data disclosed under the grant)."""
    lead = set_lead_status(referral.leads.get(partner=partner), LeadStatus.DELIVERED)
    gate.disclose(
        grant_id=referral.grant_id,
        partner_id=partner.pk,
        purpose="loan_referral",
        reference=f"lead:{lead.pk}",
    )
    return lead


def entries(kind: str) -> list[dict[str, Any]]:
    sequencer.sequence_pending()  # entries are appended pending (consent.sequencer)
    found = (
        LedgerEntry.objects.filter(kind=kind).order_by("seq").values_list("canonical", flat=True)
    )
    return [json.loads(canonical)["data"] for canonical in found]


def key_of(client: APIClient) -> ApiKey:
    """The ApiKey behind a tests.conftest.partner_client."""
    return ApiKey.objects.get(prefix=client.key.split("_")[2])  # type: ignore[attr-defined]


# --- Consent and its withdrawal take the referral's mode --------------------------------------


@pytest.mark.parametrize("mode", [KeyMode.LIVE, KeyMode.SANDBOX])
def test_consent_sent_with_a_key_has_the_keys_mode_and_its_entry_names_the_key(
    partner: Partner, mode: str
) -> None:
    source = Source(mode)

    referral = source.refer()

    assert referral.grant.is_sandbox is (mode == KeyMode.SANDBOX)
    (granted,) = entries("consent.granted")
    assert granted["receipt_id"] == str(referral.grant_id)
    assert granted["api_key"] == {"prefix": source.key.prefix, "mode": mode}


def test_withdrawing_sandbox_consent_asks_for_deletion_in_sandbox_and_names_the_key(
    partner: Partner,
) -> None:
    source = Source(KeyMode.SANDBOX)
    referral = source.refer()
    lead = delivered_to(referral, partner)

    response = source.withdraw(referral)

    assert response.status_code == 200
    expected_key = {"prefix": source.key.prefix, "mode": "sandbox"}
    (withdrawn,) = entries("consent.withdrawn")
    (requested,) = entries("deletion.requested")
    assert withdrawn["api_key"] == expected_key
    assert requested["api_key"] == expected_key and requested["lead_ids"] == [str(lead.pk)]
    # The webhook asking the partner to delete is about sandbox traffic, like the request:
    # the partner's sandbox key sees both, its live key neither.
    (message,) = WebhookMessage.objects.filter(event_type="consent.withdrawn")
    assert message.is_sandbox is True
    sandbox, live = partner_client(partner, KeyMode.SANDBOX), partner_client(partner)
    for client, expected in ((sandbox, 1), (live, 0)):
        listed = client.get("/api/v1/partner/consent-withdrawals").json()["results"]
        messages = client.get(
            "/api/v1/partner/webhook-messages", {"event_type": "consent.withdrawn"}
        ).json()["results"]
        assert (len(listed), len(messages)) == (expected, expected)


def test_a_sources_sandbox_key_cannot_withdraw_its_live_consent(partner: Partner) -> None:
    live = Source(KeyMode.LIVE)
    referral = live.refer()
    delivered_to(referral, partner)
    sandbox_client = APIClient()
    sandbox_key = issue_api_key(source=live.source, mode=KeyMode.SANDBOX).plaintext
    sandbox_client.credentials(HTTP_AUTHORIZATION=f"Bearer {sandbox_key}")
    ledger_size = LedgerEntry.objects.count()

    read = sandbox_client.get(f"/api/v1/consents/{referral.grant_id}")
    withdrawn = sandbox_client.post(
        f"/api/v1/consents/{referral.grant_id}/withdraw", {}, format="json"
    )

    assert (read.status_code, withdrawn.status_code) == (404, 404)
    assert withdrawn.json()["error"]["code"] == "not_found"
    assert not DeletionRequest.objects.exists()
    assert LedgerEntry.objects.count() == ledger_size
    assert sandbox_client.get(f"/api/v1/referrals/{referral.pk}").status_code == 404


# --- Acknowledgement ---------------------------------------------------------------------------


def test_a_sandbox_key_cannot_acknowledge_a_live_deletion_request(partner: Partner) -> None:
    source = Source(KeyMode.LIVE)
    referral = source.refer()
    delivered_to(referral, partner)
    assert source.withdraw(referral).status_code == 200
    request = DeletionRequest.objects.get(partner=partner)
    ledger_size = LedgerEntry.objects.count()
    url = f"/api/v1/partner/consent-withdrawals/{request.withdrawal_id}/ack"

    response = partner_client(partner, KeyMode.SANDBOX).post(url, {}, format="json")

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
    request.refresh_from_db()
    assert request.acknowledged_at is None
    assert LedgerEntry.objects.count() == ledger_size
    assert not entries("deletion.acknowledged")


def test_an_acknowledgement_names_the_key_that_acknowledged(partner: Partner) -> None:
    source = Source(KeyMode.LIVE)
    referral = source.refer()
    delivered_to(referral, partner)
    source.withdraw(referral)
    request = DeletionRequest.objects.get(partner=partner)
    client = partner_client(partner)

    response = client.post(
        f"/api/v1/partner/consent-withdrawals/{request.withdrawal_id}/ack", {}, format="json"
    )

    assert response.status_code == 200
    (acknowledged,) = entries("deletion.acknowledged")
    assert acknowledged["api_key"] == {"prefix": key_of(client).prefix, "mode": "live"}


def test_reading_a_pulled_leads_applicant_names_the_key_in_the_disclosure(
    partner: Partner,
) -> None:
    referral = Source(KeyMode.SANDBOX).refer()
    lead = set_lead_status(referral.leads.get(partner=partner), LeadStatus.DELIVERED)
    client = partner_client(partner, KeyMode.SANDBOX)

    response = client.get(f"/api/v1/partner/leads/{lead.pk}")

    assert response.status_code == 200 and response.json()["applicant"] is not None
    (disclosed,) = entries("data.disclosed")
    assert disclosed["api_key"] == {"prefix": key_of(client).prefix, "mode": "sandbox"}


def test_entries_written_through_the_api_hold_no_personal_data_and_the_ledger_verifies(
    partner: Partner,
) -> None:
    source = Source(KeyMode.LIVE)
    payload_values = [str(v) for v in referral_payload()["applicant"].values()]
    referral = source.refer()
    delivered_to(referral, partner)
    source.withdraw(referral)
    request = DeletionRequest.objects.get(partner=partner)
    partner_client(partner).post(
        f"/api/v1/partner/consent-withdrawals/{request.withdrawal_id}/ack", {}, format="json"
    )
    ledger.make_checkpoint()

    report = ledger.verify_ledger()

    assert report.ok, report.problems
    written = " ".join(LedgerEntry.objects.values_list("canonical", flat=True))
    assert written.count('"api_key"') == 4  # granted, withdrawn, requested, acknowledged
    for value in payload_values:
        if len(value) > 4:  # names, phone, national id, employer, address, birth date
            assert value not in written


# --- Configuration and billing -----------------------------------------------------------------


def test_products_are_read_with_both_keys_and_changed_with_a_live_key_only(
    partner: Partner,
) -> None:
    product = partner.products.get()
    sandbox, live = partner_client(partner, KeyMode.SANDBOX), partner_client(partner)
    url = f"/api/v1/partner/products/{product.pk}/change-requests"

    refused = sandbox.post(url, {"dedupe_days": 9}, format="json")
    accepted = live.post(url, {"dedupe_days": 9}, format="json")

    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "live_key_required"
    assert accepted.status_code == 201
    assert ProductChangeRequest.objects.count() == 1
    for client in (sandbox, live):
        assert client.get(f"/api/v1/partner/products/{product.pk}").status_code == 200
        listed = client.get("/api/v1/partner/change-requests").json()["results"]
        assert [row["id"] for row in listed] == [accepted.json()["id"]]


def test_a_sandbox_key_has_no_invoices_and_no_statement(partner: Partner) -> None:
    sandbox = partner_client(partner, KeyMode.SANDBOX)

    statement = sandbox.get("/api/v1/partner/statement")
    invoices = sandbox.get("/api/v1/partner/invoices")

    assert statement.status_code == 404
    assert statement.json()["error"]["code"] == "no_sandbox_billing"
    assert invoices.status_code == 200 and invoices.json()["results"] == []
    assert partner_client(partner).get("/api/v1/partner/statement").status_code == 200


# --- Existing data -----------------------------------------------------------------------------


def test_the_migration_marks_the_consent_of_existing_sandbox_referrals_sandbox(
    partner: Partner,
) -> None:
    sandbox = Source(KeyMode.SANDBOX).refer()
    live = Source(KeyMode.LIVE).refer()
    ConsentGrant.objects.update(is_sandbox=False)  # as the column's default left them
    migration = importlib.import_module("marketplace.migrations.0006_grant_mode_from_referral")

    migration.mark_sandbox_grants(apps, None)

    assert ConsentGrant.objects.get(pk=sandbox.grant_id).is_sandbox is True
    assert ConsentGrant.objects.get(pk=live.grant_id).is_sandbox is False
