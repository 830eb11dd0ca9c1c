"""Consent receipts, withdrawal and the ledger key through the REST API (source keys)."""

from __future__ import annotations

import base64
import hashlib
import uuid
from datetime import timedelta
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from django.utils import timezone
from rest_framework.test import APIClient

from consent import ledger
from consent.models import ConsentGrant, ConsentText, ConsentWithdrawal, LedgerEntry, Subject
from marketplace.models import Lead, Referral
from partners.keys import issue_api_key
from partners.models import TrafficSource
from tests.factories import ProductFactory, TrafficSourceFactory, referral_payload


def _refer(client: APIClient, **overrides: Any) -> dict[str, Any]:
    response = client.post("/api/v1/referrals", referral_payload(**overrides), format="json")
    assert response.status_code == 201, response.json()
    body: dict[str, Any] = response.json()
    return body


def _client_for(source: TrafficSource) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {issue_api_key(source=source).plaintext}")
    return client


def _consent(**overrides: Any) -> dict[str, Any]:
    consent: dict[str, Any] = referral_payload()["consent"]
    consent.update(overrides)
    return consent


def _assert_error(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.content
    body: dict[str, Any] = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "details"}
    assert body["error"]["code"] == code
    return body


def test_intake_response_carries_an_active_consent_receipt(
    source_client: APIClient, consent_text: ConsentText
) -> None:
    body = _refer(source_client)

    receipt = body["consent_receipt"]
    grant = ConsentGrant.objects.get(pk=receipt["receipt_id"])
    assert Referral.objects.get(pk=body["id"]).grant_id == grant.id
    assert receipt["status"] == "active"
    assert receipt["withdrawn_at"] is None
    assert receipt["notice"]["version"] == consent_text.version
    assert receipt["notice"]["sha256"] == hashlib.sha256(consent_text.body.encode()).hexdigest()
    assert receipt["pii_controller"]["source_id"] == str(source_client.source.id)
    assert receipt["services"][0]["purposes"] == ["loan_referral"]


def test_receipt_is_readable_by_the_source_that_collected_it(source_client: APIClient) -> None:
    receipt = _refer(source_client)["consent_receipt"]

    response = source_client.get(f"/api/v1/consents/{receipt['receipt_id']}")

    assert response.status_code == 200
    assert response.json() == receipt


def test_another_sources_receipt_is_not_found(source_client: APIClient) -> None:
    receipt_id = _refer(source_client)["consent_receipt"]["receipt_id"]
    other = _client_for(TrafficSourceFactory())

    body = _assert_error(other.get(f"/api/v1/consents/{receipt_id}"), 404, "not_found")
    _assert_error(other.post(f"/api/v1/consents/{receipt_id}/withdraw", {}), 404, "not_found")

    assert receipt_id not in str(body)
    assert not ConsentWithdrawal.objects.exists()


def test_unknown_receipt_is_not_found(source_client: APIClient) -> None:
    _assert_error(source_client.get(f"/api/v1/consents/{uuid.uuid4()}"), 404, "not_found")


def test_receipts_need_a_source_key(source_client: APIClient) -> None:
    receipt_id = _refer(source_client)["consent_receipt"]["receipt_id"]

    response = APIClient().get(f"/api/v1/consents/{receipt_id}")

    _assert_error(response, 401, "not_authenticated")


def test_withdraw_marks_the_receipt_withdrawn_and_appends_to_the_ledger(
    source_client: APIClient,
) -> None:
    receipt_id = _refer(source_client)["consent_receipt"]["receipt_id"]

    response = source_client.post(
        f"/api/v1/consents/{receipt_id}/withdraw", {"reason": "changed my mind"}, format="json"
    )

    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "withdrawn"
    withdrawal = ConsentWithdrawal.objects.get(grant_id=receipt_id)
    assert body["withdrawn_at"] == withdrawal.withdrawn_at.isoformat()
    assert (withdrawal.channel, withdrawal.reason) == ("api", "changed my mind")
    assert LedgerEntry.objects.filter(kind="consent.withdrawn").count() == 1
    assert source_client.get(f"/api/v1/consents/{receipt_id}").json()["status"] == "withdrawn"


def test_withdrawing_twice_is_a_no_op(source_client: APIClient) -> None:
    receipt_id = _refer(source_client)["consent_receipt"]["receipt_id"]
    url = f"/api/v1/consents/{receipt_id}/withdraw"
    first = source_client.post(url, {}, format="json").json()
    entries = LedgerEntry.objects.count()

    second = source_client.post(url, {"channel": "call_center"}, format="json")

    assert second.status_code == 200
    assert second.json()["status"] == "withdrawn"
    assert second.json()["withdrawn_at"] == first["withdrawn_at"]
    assert ConsentWithdrawal.objects.get(grant_id=receipt_id).channel == "api"
    assert LedgerEntry.objects.count() == entries
    assert LedgerEntry.objects.filter(kind="consent.withdrawn").count() == 1


# Intake joins the request's transaction without a savepoint: "nothing stored" is what a
# real transaction's rollback leaves, so this test runs outside the test's own transaction.
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("version", ["no-such-version", "draft-unpublished"])
def test_unknown_or_unpublished_consent_text_is_rejected_and_nothing_is_stored(
    source_client: APIClient, version: str
) -> None:
    ConsentText.objects.create(version="draft-unpublished", title="Draft", body="Not yet.")
    entries = LedgerEntry.objects.count()

    response = source_client.post(
        "/api/v1/referrals", referral_payload(consent=_consent(text_version=version)), format="json"
    )

    body = _assert_error(response, 400, "invalid_consent")
    assert list(body["error"]["details"]) == ["consent.text_version"]
    assert not Subject.objects.exists()
    assert not ConsentGrant.objects.exists()
    assert not Referral.objects.exists()
    assert LedgerEntry.objects.count() == entries


@pytest.mark.parametrize(
    ("expires_in", "status", "lead_count"),
    [(timedelta(days=30), "routed", 1), (-timedelta(minutes=5), "not_routable", 0)],
    ids=["valid-consent-routes", "expired-consent-not-routable"],
)
def test_expired_consent_makes_the_referral_not_routable(
    source_client: APIClient, expires_in: timedelta, status: str, lead_count: int
) -> None:
    # A product that fits the referral: with valid consent it gets a lead.
    ProductFactory()
    now = timezone.now()
    consent = _consent(
        collected_at=(now - timedelta(days=1)).isoformat(),
        expires_at=(now + expires_in).isoformat(),
    )

    body = _refer(source_client, consent=consent)

    assert body["status"] == status
    assert len(body["leads"]) == lead_count
    assert Lead.objects.count() == lead_count
    if lead_count == 0:
        assert body["consent_receipt"]["status"] == "expired"
        assert "expired" in body["status_reason"]


@pytest.mark.django_db(transaction=True)  # see the unknown-text test above
def test_expiry_before_collection_is_rejected_naming_the_field(source_client: APIClient) -> None:
    now = timezone.now()
    consent = _consent(
        collected_at=(now - timedelta(hours=1)).isoformat(),
        expires_at=(now - timedelta(hours=2)).isoformat(),
    )

    response = source_client.post(
        "/api/v1/referrals", referral_payload(consent=consent), format="json"
    )

    body = _assert_error(response, 400, "invalid_consent")
    assert list(body["error"]["details"]) == ["consent.expires_at"]
    assert not Referral.objects.exists()


def test_ledger_public_key_is_the_checkpoint_signing_key(client: Any, db: None) -> None:
    response = client.get("/api/v1/ledger/public-key")

    assert response.status_code == 200
    body = response.json()
    raw = base64.b64decode(body["public_key"], validate=True)
    Ed25519PublicKey.from_public_bytes(raw)
    assert body["algorithm"] == "Ed25519"
    assert body["key_id"] == ledger.public_key_id() == hashlib.sha256(raw).hexdigest()
    assert body["checkpoint_origin"] == ledger.CHECKPOINT_ORIGIN
    checkpoint = ledger.make_checkpoint()
    assert checkpoint.key_id == body["key_id"]
    assert ledger.verify_checkpoint_signature(checkpoint, Ed25519PublicKey.from_public_bytes(raw))
