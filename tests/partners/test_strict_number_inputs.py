"""Numbers as the schema says, on every input of the API: a decimal is a string matching
the pattern the OpenAPI schema publishes for it (the same pattern the field checks), an
integer a JSON integer; and every endpoint parses UTF-8 JSON only (issue 8, item 11)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from django.urls import URLPattern, URLResolver, get_resolver
from django.utils import timezone
from hypothesis import example, given
from hypothesis import strategies as st
from rest_framework import serializers
from rest_framework.test import APIClient
from rest_framework.views import APIView

from billing.models import Charge
from marketplace.api import ApplicantInput, EventInput, LoanInput
from marketplace.models import Lead, LeadEvent, LeadStatus
from partners.api import ProductChangeInput
from partners.models import Partner, Product, ProductChangeRequest
from partners.parsers import Utf8JSONParser
from tests.conftest import partner_client
from tests.factories import referral_payload
from tests.marketplace.conftest import create_referral, set_lead_status

# Every decimal input of the API: (serializer, field). A new one belongs here.
DECIMAL_INPUTS = [
    (ApplicantInput, "monthly_income"),
    (LoanInput, "amount"),
    (EventInput, "amount"),
    (EventInput, "apr"),
    (EventInput, "principal"),
    (ProductChangeInput, "min_amount"),
    (ProductChangeInput, "max_amount"),
    (ProductChangeInput, "min_monthly_income"),
    (ProductChangeInput, "apr_min"),
    (ProductChangeInput, "apr_max"),
]


def is_plain_decimal(text: str, whole_digits: int, decimal_places: int) -> bool:
    """The published rule, written without regular expressions: ASCII digits, one to
    ``whole_digits`` of them, then optionally a point and one to ``decimal_places``."""
    whole, dot, fraction = text.partition(".")

    def ascii_digits(part: str, most: int) -> bool:
        return 1 <= len(part) <= most and all(c in "0123456789" for c in part)

    if not ascii_digits(whole, whole_digits):
        return False
    return not dot or ascii_digits(fraction, decimal_places)


def field_of(serializer: type[serializers.Serializer], name: str) -> serializers.DecimalField:
    field = serializer().fields[name]
    assert isinstance(field, serializers.DecimalField)
    return field


def accepts(field: serializers.DecimalField, value: object) -> bool:
    try:
        field.run_validation(value)
    except serializers.ValidationError:
        return False
    return True


def within_bounds(field: serializers.DecimalField, text: str) -> bool:
    value = Decimal(text)
    low, high = field.min_value, field.max_value
    return (low is None or value >= low) and (high is None or value <= high)


NEAR_NUMBERS = st.text(
    alphabet=st.sampled_from([*"0123456789.-+_eE, \t\n", "８", "٣", "𝟗", "\u00a0", "½"]),
    max_size=16,
)


@pytest.mark.parametrize(("serializer", "name"), DECIMAL_INPUTS)
@given(text=st.one_of(NEAR_NUMBERS, st.text(max_size=16)))
@example(text="８０００")
@example(text="8_000")
@example(text="1e2")
@example(text="0.5")
def test_a_decimal_input_accepts_exactly_the_strings_its_rule_allows(
    serializer: type[serializers.Serializer], name: str, text: str
) -> None:
    field = field_of(serializer, name)
    whole_digits = field.max_digits - field.decimal_places
    expected = is_plain_decimal(text, whole_digits, field.decimal_places) and within_bounds(
        field, text
    )

    assert accepts(field, text) is expected


@pytest.mark.parametrize(("serializer", "name"), DECIMAL_INPUTS)
@given(data=st.data())
def test_every_string_matching_the_published_pattern_is_accepted_within_bounds(
    serializer: type[serializers.Serializer], name: str, data: st.DataObject
) -> None:
    field = field_of(serializer, name)
    # The pattern the schema publishes (test_the_schema_publishes_each_decimal_inputs_own_
    # pattern); ECMA-262 there, and ASCII classes read the same in Python.
    pattern = field.pattern  # type: ignore[attr-defined]
    text = data.draw(st.from_regex(re.compile(pattern, re.ASCII), fullmatch=True))

    assert accepts(field, text) is within_bounds(field, text)


@pytest.mark.parametrize(("serializer", "name"), DECIMAL_INPUTS)
@pytest.mark.parametrize("value", [8000, 0.5, True, None, ["1"]])
def test_a_decimal_input_refuses_anything_but_a_string(
    serializer: type[serializers.Serializer], name: str, value: object
) -> None:
    field = field_of(serializer, name)
    if value is None and field.allow_null:
        assert accepts(field, value)
    else:
        assert not accepts(field, value)


# --- The schema states the pattern the field checks ------------------------------------------


_SCHEMA: dict[str, Any] = {}


def schema() -> dict[str, Any]:
    if not _SCHEMA:
        response = APIClient().get("/api/schema/?format=json")
        assert response.status_code == 200
        _SCHEMA.update(response.json())
    return _SCHEMA


def schema_decimal_patterns() -> dict[tuple[str, str], str]:
    """(serializer name, field) -> pattern of every decimal property of a request body."""
    found = {}
    for component, body in schema()["components"]["schemas"].items():
        if not component.endswith("Request"):
            continue
        for name, prop in body.get("properties", {}).items():
            if prop.get("format") == "decimal":
                found[(component.removesuffix("Request"), name)] = prop.get("pattern")
    return found


def test_the_schema_publishes_each_decimal_inputs_own_pattern() -> None:
    published = schema_decimal_patterns()

    # Every decimal in a request body is one of ours, and none is left out.
    assert set(published) == {(s.__name__, n) for s, n in DECIMAL_INPUTS}
    for serializer, name in DECIMAL_INPUTS:
        field = field_of(serializer, name)
        assert published[(serializer.__name__, name)] == field.pattern  # type: ignore[attr-defined]
        # ASCII digits only: "\d" would admit any Unicode digit in Python.
        assert "\\d" not in published[(serializer.__name__, name)]


def test_term_months_is_published_as_an_integer() -> None:
    loan = schema()["components"]["schemas"]["LoanInputRequest"]["properties"]

    assert loan["term_months"]["type"] == "integer"


# --- Partner inputs through the API -----------------------------------------------------------


@pytest.fixture
def delivered_lead(source: Any, consent_text: object, partner: Partner) -> Lead:
    referral = create_referral(source, referral_payload())
    return set_lead_status(referral.leads.get(partner=partner), LeadStatus.DELIVERED)


def post_event(client: APIClient, lead: Lead, fields: dict[str, Any]) -> Any:
    body = {"event_id": "evt-1", "occurred_at": timezone.now().isoformat(), **fields}
    return client.post(f"/api/v1/partner/leads/{lead.id}/events", body, format="json")


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"type": "funded", "principal": "８０００"}, "principal"),
        ({"type": "funded", "principal": "8_000"}, "principal"),
        ({"type": "funded", "principal": "8e3"}, "principal"),
        ({"type": "funded", "principal": 8000}, "principal"),
        ({"type": "funded", "principal": " 8000.00"}, "principal"),
        ({"type": "approved", "amount": "+8000", "apr": "0.18"}, "amount"),
        ({"type": "approved", "amount": "8000", "apr": "1.8e-1"}, "apr"),
        ({"type": "approved", "amount": "8000", "apr": ".18"}, "apr"),
    ],
)
def test_partner_event_with_a_number_off_the_pattern_is_400_and_nothing_recorded(
    partner: Partner, delivered_lead: Lead, fields: dict[str, Any], field: str
) -> None:
    response = post_event(partner_client(partner), delivered_lead, fields)

    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert field in error["details"]
    assert not LeadEvent.objects.exists()
    assert not Charge.objects.exists()


def test_partner_event_with_numbers_as_the_schema_says_is_recorded(
    partner: Partner, delivered_lead: Lead
) -> None:
    response = post_event(
        partner_client(partner), delivered_lead, {"type": "funded", "principal": "8000"}
    )

    assert response.status_code == 201, response.content
    assert LeadEvent.objects.get().principal == Decimal("8000.00")


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"max_amount": "８００００"}, "max_amount"),
        ({"max_amount": "80_000.00"}, "max_amount"),
        ({"max_amount": 80000}, "max_amount"),
        ({"apr_max": "2.1e-1"}, "apr_max"),
        ({"min_monthly_income": "3000 "}, "min_monthly_income"),
        ({"max_term_months": 3.6e1}, "max_term_months"),
        ({"max_term_months": "36"}, "max_term_months"),
        ({"dedupe_days": 14.0}, "dedupe_days"),
        ({"min_age": "２１"}, "min_age"),
    ],
)
def test_change_request_with_a_number_off_the_schema_is_400_and_nothing_stored(
    partner: Partner, changes: dict[str, Any], field: str
) -> None:
    product: Product = partner.products.get()

    response = partner_client(partner).post(
        f"/api/v1/partner/products/{product.id}/change-requests", changes, format="json"
    )

    assert response.status_code == 400, response.content
    assert field in response.json()["error"]["details"]
    assert not ProductChangeRequest.objects.exists()


# --- UTF-8 JSON on every endpoint -----------------------------------------------------------


def api_views(patterns: list[Any] | None = None) -> Iterator[type[APIView]]:
    for entry in get_resolver().url_patterns if patterns is None else patterns:
        if isinstance(entry, URLResolver):
            yield from api_views(entry.url_patterns)
        elif isinstance(entry, URLPattern):
            view = getattr(entry.callback, "cls", None)
            if isinstance(view, type) and issubclass(view, APIView):
                yield view


def test_every_api_view_parses_utf_8_json_only() -> None:
    views = set(api_views())

    assert len(views) > 20
    for view in views:
        parsers = view().get_parsers()
        assert parsers, view
        assert all(isinstance(p, Utf8JSONParser) for p in parsers), view.__name__


def test_a_latin_1_body_on_a_partner_endpoint_is_415_and_nothing_stored(
    partner: Partner,
) -> None:
    product: Product = partner.products.get()

    response = partner_client(partner).post(
        f"/api/v1/partner/products/{product.id}/change-requests",
        data=json.dumps({"name": "Prêt conso"}, ensure_ascii=False).encode("latin-1"),
        content_type="application/json; charset=latin-1",
    )

    assert response.status_code == 415, response.content
    error = response.json()["error"]
    assert error["code"] == "unsupported_charset"
    assert "Content-Type" in error["details"]
    assert not ProductChangeRequest.objects.exists()


def test_a_form_body_is_415_in_the_error_shape(partner: Partner) -> None:
    product: Product = partner.products.get()

    response = partner_client(partner).post(
        f"/api/v1/partner/products/{product.id}/change-requests", {"name": "Loan"}
    )

    assert response.status_code == 415
    assert response.json()["error"]["code"] == "unsupported_media_type"
    assert not ProductChangeRequest.objects.exists()
