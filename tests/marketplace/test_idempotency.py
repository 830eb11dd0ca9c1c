"""``Idempotency-Key`` on referral intake: same key and body replays the first response,
another body is 422, a request still running is 409, a failed request frees the key."""

from __future__ import annotations

import hashlib
import json
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from marketplace.models import Referral
from partners.idempotency import STALE_AFTER
from partners.keys import issue_api_key
from partners.models import ApiKey, IdempotencyRecord
from tests.factories import TrafficSourceFactory, referral_payload
from tests.marketplace.conftest import REFERRALS_URL, api_post, stored_counts

pytestmark = pytest.mark.django_db


def post_raw(client: APIClient, body: bytes, key: str) -> Any:
    return client.post(
        REFERRALS_URL, data=body, content_type="application/json", headers={"Idempotency-Key": key}
    )


def source_api_key(client: APIClient) -> ApiKey:
    return ApiKey.objects.get(source=client.source)  # type: ignore[attr-defined]


def test_same_key_and_body_replays_the_first_response(source_client: APIClient) -> None:
    body = referral_payload()

    first = api_post(source_client, body, **{"Idempotency-Key": "ref-1"})
    second = api_post(source_client, body, **{"Idempotency-Key": "ref-1"})

    assert first.status_code == 201, first.content
    assert "Idempotent-Replayed" not in first
    assert second.status_code == 201
    assert second["Idempotent-Replayed"] == "true"
    assert second.json() == first.json()
    assert Referral.objects.count() == 1


def test_replay_does_not_store_anything_new(source_client: APIClient) -> None:
    body = referral_payload()
    api_post(source_client, body, **{"Idempotency-Key": "ref-1"})
    after_first = stored_counts()

    api_post(source_client, body, **{"Idempotency-Key": "ref-1"})

    assert stored_counts() == after_first


def test_same_key_with_another_body_is_422(source_client: APIClient) -> None:
    body = referral_payload()
    api_post(source_client, body, **{"Idempotency-Key": "ref-1"})
    other = referral_payload()
    other["loan"]["amount"] = "9000.00"

    response = api_post(source_client, other, **{"Idempotency-Key": "ref-1"})

    assert response.status_code == 422
    assert response.json()["error"]["code"] == "idempotency_key_reused"
    assert Referral.objects.count() == 1


def test_a_request_still_running_with_the_key_is_409(source_client: APIClient) -> None:
    body = json.dumps(referral_payload()).encode()
    fingerprint = hashlib.sha256(b"POST\0" + REFERRALS_URL.encode() + b"\0" + body).hexdigest()
    IdempotencyRecord.objects.create(
        api_key=source_api_key(source_client),
        key="ref-running",
        request_fingerprint=fingerprint,
        state=IdempotencyRecord.State.RUNNING,
    )

    response = post_raw(source_client, body, "ref-running")

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "idempotency_request_in_progress"
    assert Referral.objects.count() == 0


def test_a_running_record_with_another_body_is_still_422(source_client: APIClient) -> None:
    IdempotencyRecord.objects.create(
        api_key=source_api_key(source_client),
        key="ref-running",
        request_fingerprint="0" * 64,
        state=IdempotencyRecord.State.RUNNING,
    )

    response = post_raw(source_client, json.dumps(referral_payload()).encode(), "ref-running")

    assert response.status_code == 422
    assert response.json()["error"]["code"] == "idempotency_key_reused"


def test_a_400_frees_the_key_for_a_corrected_retry(source_client: APIClient) -> None:
    bad = referral_payload()
    bad["risk_tier"] = "R9"

    rejected = api_post(source_client, bad, **{"Idempotency-Key": "ref-1"})
    assert rejected.status_code == 400
    assert not IdempotencyRecord.objects.filter(key="ref-1").exists()

    fixed = referral_payload()
    accepted = api_post(source_client, fixed, **{"Idempotency-Key": "ref-1"})

    assert accepted.status_code == 201, accepted.content
    assert "Idempotent-Replayed" not in accepted
    assert Referral.objects.count() == 1
    record = IdempotencyRecord.objects.get(key="ref-1")
    assert record.state == IdempotencyRecord.State.DONE
    assert record.response_status == 201


def test_the_same_bad_body_again_is_validated_again_not_replayed(
    source_client: APIClient,
) -> None:
    bad = referral_payload()
    bad["region"] = "guangdong"

    first = api_post(source_client, bad, **{"Idempotency-Key": "ref-1"})
    second = api_post(source_client, bad, **{"Idempotency-Key": "ref-1"})

    assert first.status_code == second.status_code == 400
    assert "Idempotent-Replayed" not in second


def test_keys_are_scoped_to_the_api_key(source_client: APIClient) -> None:
    other_client = APIClient()
    other_client.credentials(
        HTTP_AUTHORIZATION=f"Bearer {issue_api_key(source=TrafficSourceFactory()).plaintext}"
    )
    body = referral_payload()

    first = api_post(source_client, body, **{"Idempotency-Key": "shared-key"})
    second = api_post(other_client, body, **{"Idempotency-Key": "shared-key"})

    assert first.status_code == second.status_code == 201
    assert "Idempotent-Replayed" not in second
    assert first.json()["id"] != second.json()["id"]
    assert Referral.objects.count() == 2


def test_without_a_key_each_post_creates_a_referral(source_client: APIClient) -> None:
    body = referral_payload()

    api_post(source_client, body)
    api_post(source_client, body)

    assert Referral.objects.count() == 2


def test_overlong_key_is_400(source_client: APIClient) -> None:
    response = api_post(source_client, referral_payload(), **{"Idempotency-Key": "k" * 201})

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_idempotency_key"
    assert Referral.objects.count() == 0


# Intake joins the request's transaction without a savepoint: "nothing stored" is what a
# real transaction's rollback leaves, so this test runs outside the test's own transaction.
@pytest.mark.django_db(transaction=True)
def test_duplicate_source_reference_is_409_naming_the_field(source_client: APIClient) -> None:
    first = api_post(source_client, referral_payload(source_reference="APP-1"))
    assert first.status_code == 201, first.content
    before = stored_counts()

    response = api_post(source_client, referral_payload(source_reference="APP-1"))

    assert response.status_code == 409
    error = response.json()["error"]
    assert error["code"] == "duplicate_source_reference"
    assert list(error["details"]) == ["source_reference"]
    assert stored_counts() == before


def test_source_reference_is_unique_per_source_only(source_client: APIClient) -> None:
    other_client = APIClient()
    other_client.credentials(
        HTTP_AUTHORIZATION=f"Bearer {issue_api_key(source=TrafficSourceFactory()).plaintext}"
    )

    first = api_post(source_client, referral_payload(source_reference="APP-1"))
    second = api_post(other_client, referral_payload(source_reference="APP-1"))

    assert first.status_code == second.status_code == 201


def test_a_request_whose_process_died_frees_its_key_after_a_while(
    source_client: APIClient,
) -> None:
    body = json.dumps(referral_payload()).encode()
    fingerprint = hashlib.sha256(b"POST\0" + REFERRALS_URL.encode() + b"\0" + body).hexdigest()
    record = IdempotencyRecord.objects.create(
        api_key=source_api_key(source_client),
        key="ref-died",
        request_fingerprint=fingerprint,
        state=IdempotencyRecord.State.RUNNING,
    )
    IdempotencyRecord.objects.filter(pk=record.pk).update(
        created_at=timezone.now() - STALE_AFTER - timedelta(seconds=1)
    )

    response = post_raw(source_client, body, "ref-died")

    assert response.status_code == 201
    assert Referral.objects.count() == 1
    assert IdempotencyRecord.objects.get(key="ref-died").state == IdempotencyRecord.State.DONE
