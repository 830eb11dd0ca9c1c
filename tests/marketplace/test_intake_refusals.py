"""Referrals that must never be stored (issue 8, item 11): a minor, an impossible age,
consent evidence from the far past or the future, numbers written in any way the schema's
pattern does not allow, and bodies that are not UTF-8. Each is refused before anything is
written: no vault subject, no grant, no ledger entry, no referral, no lead, no disclosure,
no idempotency record."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from datetime import date, timedelta
from typing import Any

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from consent import vault
from consent.models import Subject
from tests.factories import ProductFactory, referral_payload
from tests.marketplace.conftest import REFERRALS_URL, stored_counts

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def wide_product(db: None) -> None:
    """A product that takes any adult, so an accepted referral would also make a lead."""
    ProductFactory(min_age=18, max_age=100, risk_tiers=["R1", "R2", "R3", "R4", "R5", "R6"])


def years_ago(years: int, *, days: int = 0) -> str:
    today = timezone.now().date()
    try:
        anniversary = today.replace(year=today.year - years)
    except ValueError:  # 29 February: the birthday is reached on 1 March
        anniversary = date(today.year - years, 3, 1)
    return (anniversary + timedelta(days=days)).isoformat()


def ago(**delta: float) -> str:
    return (timezone.now() - timedelta(**delta)).isoformat()


def set_path(body: dict[str, Any], dotted: str, value: object) -> dict[str, Any]:
    *path, last = dotted.split(".")
    node = body
    for name in path:
        node = node[name]
    node[last] = value
    return body


def post(client: APIClient, content: bytes, content_type: str = "application/json") -> Any:
    return client.post(
        REFERRALS_URL,
        data=content,
        content_type=content_type,
        headers={"Idempotency-Key": f"refusal-{uuid.uuid4()}"},
    )


def post_json(client: APIClient, body: dict[str, Any]) -> Any:
    return post(client, json.dumps(body, ensure_ascii=False).encode())


def assert_refused(response: Any, field: str, before: dict[str, int], status: int = 400) -> None:
    assert response.status_code == status, response.content
    error = response.json()["error"]
    assert set(error) == {"code", "message", "details"}
    assert field in error["details"], error
    assert error["details"][field] and all(isinstance(m, str) for m in error["details"][field])
    assert stored_counts() == before


# --- Age ---------------------------------------------------------------------------------------

AGE_CASES = [
    pytest.param("2014-05-05", id="twelve-year-old-from-the-issue"),
    pytest.param(lambda: years_ago(18, days=1), id="one-day-before-the-18th-birthday"),
    pytest.param(lambda: years_ago(226), id="age-226-from-the-issue"),
    pytest.param(lambda: years_ago(101), id="above-the-maximum-age"),
    pytest.param("0001-01-01", id="year-one"),
    pytest.param(lambda: (timezone.now().date() + timedelta(days=1)).isoformat(), id="future"),
]


@pytest.mark.parametrize("birth_date", AGE_CASES)
def test_applicant_outside_the_age_limits_is_refused_and_nothing_is_stored(
    source_client: APIClient, birth_date: str | Callable[[], str]
) -> None:
    body = referral_payload()
    body["applicant"]["birth_date"] = birth_date() if callable(birth_date) else birth_date
    before = stored_counts()

    response = post_json(source_client, body)

    assert_refused(response, "applicant.birth_date", before)
    # The birth date is personal data: it is not echoed back.
    assert body["applicant"]["birth_date"].encode() not in response.content


@pytest.mark.parametrize(
    "birth_date",
    [
        pytest.param(lambda: years_ago(18), id="18th-birthday-today"),
        pytest.param(lambda: years_ago(100), id="100-years-old"),
    ],
)
def test_applicant_at_the_age_limits_is_accepted(
    source_client: APIClient, birth_date: Callable[[], str]
) -> None:
    body = referral_payload()
    body["applicant"]["birth_date"] = birth_date()

    response = post_json(source_client, body)

    assert response.status_code == 201, response.content
    assert Subject.objects.count() == 1


def test_minimum_age_comes_from_the_regulatory_setting(
    source_client: APIClient, settings: Any
) -> None:
    settings.MIN_APPLICANT_AGE = 20
    body = referral_payload()
    body["applicant"]["birth_date"] = years_ago(19)
    before = stored_counts()

    response = post_json(source_client, body)

    assert_refused(response, "applicant.birth_date", before)
    assert "20" in response.json()["error"]["details"]["applicant.birth_date"][0]


# --- Consent time ------------------------------------------------------------------------------

CONSENT_TIME_CASES = [
    pytest.param("0001-01-01T00:00:00Z", id="year-one-from-the-issue"),
    pytest.param(lambda: ago(days=31), id="older-than-the-freshness-window"),
    pytest.param(lambda: ago(minutes=-10), id="future-beyond-clock-skew"),
    pytest.param("9999-12-31T23:59:59Z", id="far-future"),
]


@pytest.mark.parametrize("collected_at", CONSENT_TIME_CASES)
def test_consent_collected_outside_the_window_is_refused_and_nothing_is_stored(
    source_client: APIClient, collected_at: str | Callable[[], str]
) -> None:
    body = referral_payload()
    body["consent"]["collected_at"] = collected_at() if callable(collected_at) else collected_at
    before = stored_counts()

    response = post_json(source_client, body)

    assert_refused(response, "consent.collected_at", before)


@pytest.mark.parametrize(
    "collected_at",
    [
        pytest.param(lambda: ago(days=29), id="29-days-ago"),
        pytest.param(lambda: ago(minutes=-2), id="two-minutes-ahead-within-clock-skew"),
    ],
)
def test_consent_collected_inside_the_window_is_accepted(
    source_client: APIClient, collected_at: Callable[[], str]
) -> None:
    body = referral_payload()
    body["consent"]["collected_at"] = collected_at()

    response = post_json(source_client, body)

    assert response.status_code == 201, response.content


def test_consent_freshness_window_comes_from_the_setting(
    source_client: APIClient, settings: Any
) -> None:
    settings.CONSENT_MAX_AGE_DAYS = 2
    body = referral_payload()
    body["consent"]["collected_at"] = ago(days=3)
    before = stored_counts()

    response = post_json(source_client, body)

    assert_refused(response, "consent.collected_at", before)


# --- Decimals and integers, exactly as the schema says ---------------------------------------

BAD_DECIMALS = [
    pytest.param("８０００", id="full-width-digits-from-the-issue"),
    pytest.param("8_000", id="underscore-from-the-issue"),
    pytest.param("٨٠٠٠", id="arabic-indic-digits"),
    pytest.param("8e3", id="exponent"),
    pytest.param("+8000", id="leading-plus"),
    pytest.param(" 8000", id="leading-space"),
    pytest.param("8000 ", id="trailing-space"),
    pytest.param("8000\n", id="trailing-newline"),
    pytest.param("8,000", id="thousands-separator"),
    pytest.param("8000.", id="dot-without-decimals"),
    pytest.param(".50", id="no-whole-digits"),
    pytest.param("8000.001", id="three-decimals"),
    pytest.param("0x1F40", id="hexadecimal"),
    pytest.param("", id="empty"),
    pytest.param(8000, id="json-integer-not-a-string"),
    pytest.param(8000.5, id="json-float-not-a-string"),
]


@pytest.mark.parametrize("field", ["loan.amount", "applicant.monthly_income"])
@pytest.mark.parametrize("value", BAD_DECIMALS)
def test_decimal_not_matching_the_schema_pattern_is_refused_and_nothing_is_stored(
    source_client: APIClient, field: str, value: object
) -> None:
    body = set_path(referral_payload(), field, value)
    before = stored_counts()

    response = post_json(source_client, body)

    assert_refused(response, field, before)


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param("1e2", id="exponent-from-the-issue"),
        pytest.param("100.0", id="float-with-zero-fraction"),
        pytest.param("12.0", id="twelve-as-float"),
        pytest.param('"12"', id="string"),
        pytest.param('"１２"', id="full-width-string"),
        pytest.param('"1_2"', id="underscore-string"),
        pytest.param("true", id="boolean"),
    ],
)
def test_term_months_must_be_a_json_integer(source_client: APIClient, raw: str) -> None:
    # Written into the raw body: json.dumps would turn 1e2 into 100.0 on the way.
    body = referral_payload()
    body["loan"]["term_months"] = "__TERM__"
    content = json.dumps(body).replace('"__TERM__"', raw).encode()
    before = stored_counts()

    response = post(source_client, content)

    assert_refused(response, "loan.term_months", before)


def test_decimals_and_integers_as_the_schema_says_are_accepted(source_client: APIClient) -> None:
    body = referral_payload()
    body["loan"].update(amount="8000", term_months=12)
    body["applicant"]["monthly_income"] = "8500.5"

    response = post_json(source_client, body)

    assert response.status_code == 201, response.content
    assert response.json()["amount"] == "8000.00"


# --- UTF-8 only ----------------------------------------------------------------------------------


def zoe_body() -> dict[str, Any]:
    body = referral_payload()
    body["applicant"]["full_name"] = "Zoë Müller"
    return body


@pytest.mark.parametrize(
    ("content_type", "encode"),
    [
        pytest.param(
            "application/json; charset=latin-1",
            lambda text: text.encode("latin-1"),
            id="latin-1-body-declared-latin-1-from-the-issue",
        ),
        pytest.param(
            "application/json; charset=latin-1",
            lambda text: text.encode("utf-8"),
            id="utf-8-body-declared-latin-1-would-be-garbled",
        ),
        pytest.param(
            "application/json; charset=ISO-8859-1",
            lambda text: text.encode("utf-8"),
            id="iso-8859-1",
        ),
        pytest.param(
            "application/json; charset=utf-16",
            lambda text: text.encode("utf-16"),
            id="utf-16",
        ),
        pytest.param(
            "application/json; charset=no-such-charset",
            lambda text: text.encode("utf-8"),
            id="unknown-charset",
        ),
    ],
)
def test_body_declared_in_another_charset_is_refused_and_nothing_is_stored(
    source_client: APIClient, content_type: str, encode: Callable[[str], bytes]
) -> None:
    before = stored_counts()

    response = post(source_client, encode(json.dumps(zoe_body(), ensure_ascii=False)), content_type)

    assert_refused(response, "Content-Type", before, status=415)
    assert response.json()["error"]["code"] == "unsupported_charset"


def test_bytes_that_are_not_utf_8_are_refused_and_nothing_is_stored(
    source_client: APIClient,
) -> None:
    content = json.dumps(zoe_body(), ensure_ascii=False).encode("latin-1")
    before = stored_counts()

    response = post(source_client, content)

    assert response.status_code == 400, response.content
    assert response.json()["error"]["code"] == "parse_error"
    assert stored_counts() == before


def test_escaped_lone_surrogate_is_refused_and_nothing_is_stored(
    source_client: APIClient,
) -> None:
    # Valid UTF-8 bytes, but "\ud800" decodes to a string no UTF-8 encoder can write back.
    content = json.dumps(referral_payload()).replace("Wang Xiaoming", "Wang \\ud800").encode()
    before = stored_counts()

    response = post(source_client, content)

    assert response.status_code == 400, response.content
    assert response.json()["error"]["code"] == "parse_error"
    assert stored_counts() == before


@pytest.mark.parametrize(
    "content_type",
    [
        "application/json",
        "application/json; charset=utf-8",
        "application/json; charset=UTF-8",
        'application/json; charset="utf-8"',
        "application/json;charset=utf8",
    ],
)
def test_utf_8_body_is_accepted_and_the_name_kept_exactly(
    source_client: APIClient, content_type: str
) -> None:
    response = post(
        source_client, json.dumps(zoe_body(), ensure_ascii=False).encode(), content_type
    )

    assert response.status_code == 201, response.content
    subject = Subject.objects.get()
    assert vault._decrypt(subject, ("full_name",))["full_name"] == "Zoë Müller"
