"""Bad intake input: a 400 naming the field, nothing stored, and no personal data echoed
back in the error body or written to the logs."""

from __future__ import annotations

import copy
import logging
import uuid
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from tests.factories import PartnerFactory, referral_payload
from tests.marketplace.conftest import REFERRALS_URL, api_post, pii_strings, stored_counts

pytestmark = pytest.mark.django_db

MISSING = object()
BAD_PHONE = "13800138000 ext 5"
BAD_NATIONAL_ID = "110101-19900307-1234"


def with_value(payload: dict[str, Any], dotted: str, value: object) -> dict[str, Any]:
    body = copy.deepcopy(payload)
    *path, last = dotted.split(".")
    node = body
    for name in path:
        node = node[name]
    if value is MISSING:
        del node[last]
    else:
        node[last] = value
    return body


def future(**delta: int) -> str:
    return (timezone.now() + timedelta(**delta)).isoformat()


BAD_FIELDS = [
    pytest.param("applicant.phone", MISSING, id="missing-phone"),
    pytest.param("applicant.phone", BAD_PHONE, id="bad-phone"),
    pytest.param("applicant.national_id", BAD_NATIONAL_ID, id="bad-national-id"),
    pytest.param("applicant.full_name", MISSING, id="missing-name"),
    pytest.param(
        "applicant.birth_date",
        lambda: (timezone.now().date() + timedelta(days=1)).isoformat(),
        id="birth-date-in-future",
    ),
    pytest.param("applicant.birth_date", "07/03/1990", id="birth-date-bad-format"),
    pytest.param("applicant.monthly_income", "-1.00", id="negative-income"),
    pytest.param("loan.amount", "0", id="amount-zero"),
    pytest.param("loan.amount", "abc", id="amount-not-a-number"),
    pytest.param("loan.amount", "-500.00", id="amount-negative"),
    pytest.param("loan.currency", "USD", id="unknown-currency"),
    pytest.param("loan.term_months", 0, id="term-zero"),
    pytest.param("risk_tier", "R9", id="unknown-risk-tier"),
    pytest.param("region", "guangdong", id="region-not-iso-3166-2"),
    pytest.param("employment_type", "astronaut", id="unknown-employment-type"),
    pytest.param("consent.collected_at", lambda: future(days=1), id="consent-in-future"),
    pytest.param("consent.scope", "everyone", id="unknown-consent-scope"),
    pytest.param("consent.ip_address", "not-an-ip", id="bad-consent-ip"),
    pytest.param("consent", MISSING, id="missing-consent"),
]


@pytest.mark.parametrize(("field", "value"), BAD_FIELDS)
def test_bad_field_is_400_naming_the_field_and_stores_nothing(
    source_client: APIClient, caplog: pytest.LogCaptureFixture, field: str, value: object
) -> None:
    caplog.set_level(logging.DEBUG)
    payload = referral_payload()
    body = with_value(payload, field, value() if callable(value) else value)
    before = stored_counts()

    response = api_post(source_client, body)

    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert field in error["details"], error["details"]
    assert all(isinstance(message, str) for message in error["details"][field])
    assert stored_counts() == before
    # Nothing the applicant typed comes back in the error or lands in a log line.
    for secret in [*pii_strings(payload), BAD_PHONE, BAD_NATIONAL_ID]:
        assert secret.encode() not in response.content
        assert secret not in caplog.text


def test_several_bad_fields_are_all_reported_with_dotted_keys(source_client: APIClient) -> None:
    body = referral_payload()
    body["applicant"]["phone"] = BAD_PHONE
    body["loan"]["currency"] = "USD"
    body["risk_tier"] = "R9"
    body["consent"]["scope"] = "everyone"

    response = api_post(source_client, body)

    assert response.status_code == 400
    assert set(response.json()["error"]["details"]) == {
        "applicant.phone",
        "loan.currency",
        "risk_tier",
        "consent.scope",
    }


def test_named_partner_ids_that_do_not_exist_are_400(source_client: APIClient) -> None:
    known = PartnerFactory()
    unknown = uuid.uuid4()
    body = referral_payload()
    body["consent"]["scope"] = "named_partners"
    body["consent"]["partner_ids"] = [str(known.id), str(unknown)]
    before = stored_counts()

    response = api_post(source_client, body)

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert list(error["details"]) == ["consent.partner_ids"]
    assert str(unknown) in error["details"]["consent.partner_ids"][0]
    assert str(known.id) not in error["details"]["consent.partner_ids"][0]
    assert stored_counts() == before


def test_partner_id_that_is_not_a_uuid_is_400(source_client: APIClient) -> None:
    body = referral_payload()
    body["consent"]["scope"] = "named_partners"
    body["consent"]["partner_ids"] = ["acme"]

    response = api_post(source_client, body)

    assert response.status_code == 400
    # List items are named by index in the same dotted style.
    assert list(response.json()["error"]["details"]) == ["consent.partner_ids.0"]


# Intake joins the request's transaction without a savepoint: "nothing stored" is what a
# real transaction's rollback leaves, so this test runs outside the test's own transaction.
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("change", "field"),
    [
        pytest.param({"text_version": "no-such-text"}, "consent.text_version", id="unknown-text"),
        pytest.param(
            {"expires_at": "2020-01-01T00:00:00Z"}, "consent.expires_at", id="expires-before"
        ),
        pytest.param({"scope": "named_partners"}, "consent.partner_ids", id="named-but-none"),
    ],
)
def test_unusable_consent_evidence_is_400_invalid_consent_and_stores_nothing(
    source_client: APIClient, change: dict[str, str], field: str
) -> None:
    body = referral_payload()
    body["consent"].update(change)
    before = stored_counts()

    response = api_post(source_client, body)

    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == "invalid_consent"
    assert field in error["details"]
    assert stored_counts() == before


@pytest.mark.parametrize(
    ("content", "content_type"),
    [
        pytest.param(b'{"applicant": {"phone": "+86 138 0013 8000"', "application/json", id="cut"),
        pytest.param(b"\xff\xfe not utf-8", "application/json", id="not-utf8"),
    ],
)
def test_body_that_is_not_json_is_400_in_the_error_shape_and_stores_nothing(
    source_client: APIClient,
    caplog: pytest.LogCaptureFixture,
    content: bytes,
    content_type: str,
) -> None:
    caplog.set_level(logging.DEBUG)
    before = stored_counts()

    response = source_client.post(REFERRALS_URL, data=content, content_type=content_type)

    assert response.status_code == 400
    error = response.json()["error"]
    # A body that is not JSON has no field to name: DRF's parse_error, in the one shape.
    assert error["code"] == "parse_error"
    assert error["details"] == {}
    assert b"138 0013" not in response.content
    assert "138 0013" not in caplog.text
    assert stored_counts() == before


@pytest.mark.parametrize("body", [[1, 2], "a string", 42])
def test_json_that_is_not_an_object_is_a_validation_error(
    source_client: APIClient, body: object
) -> None:
    before = stored_counts()

    response = source_client.post(REFERRALS_URL, body, format="json")

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert "non_field_errors" in error["details"]
    assert stored_counts() == before


def test_valid_body_is_accepted_and_stores_one_of_each(source_client: APIClient) -> None:
    """The control for the tests above: the same counters move for a good body."""
    before = stored_counts()

    response = api_post(source_client, referral_payload())

    assert response.status_code == 201, response.content
    after = stored_counts()
    assert after["subjects"] == before["subjects"] + 1
    assert after["grants"] == before["grants"] + 1
    assert after["referrals"] == before["referrals"] + 1
    assert after["ledger_entries"] > before["ledger_entries"]
