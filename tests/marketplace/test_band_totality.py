"""Bands are total: any value a referral row can hold (income floors that are not one of
the band floors, ages outside every band) gives the label of the band containing it, so the
partner lead list, a lead's detail and a ping never fail on a stored value."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rest_framework.test import APIClient

from marketplace.bands import AGE_BANDS, INCOME_BAND_FLOORS, age_band_label, income_band_label
from marketplace.models import Lead, Referral
from marketplace.pings import ping_payload
from partners.models import Partner
from tests.conftest import partner_client

# Everything Referral.income_band_floor (DecimalField(13, 2)) and Referral.age
# (PositiveSmallIntegerField) can store.
STORED_INCOME = st.decimals(
    min_value=Decimal("-99999999999.99"),
    max_value=Decimal("99999999999.99"),
    places=2,
    allow_nan=False,
    allow_infinity=False,
)
STORED_AGE = st.integers(min_value=0, max_value=32767)

db_examples = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def _income_range(label: str) -> tuple[Decimal, Decimal | None]:
    if label.endswith("+"):
        return Decimal(label[:-1]), None
    low, high = label.split("-")
    return Decimal(low), Decimal(high) + 1  # labels name whole yuan: 5000-9999 is < 10000


INCOME_LABELS = {income_band_label(floor) for floor in INCOME_BAND_FLOORS}
AGE_LABELS = {f"{low}-{high}" for low, high in AGE_BANDS} | {"under-18", "over-120"}


@given(value=STORED_INCOME)
def test_income_band_label_is_the_band_containing_any_stored_value(value: Decimal) -> None:
    label = income_band_label(value)

    assert label in INCOME_LABELS
    low, high = _income_range(label)
    if value < 0:  # not an income: the lowest band, never an error
        assert low == INCOME_BAND_FLOORS[0]
    else:
        assert low <= value and (high is None or value < high)


@pytest.mark.parametrize(
    ("value", "label"),
    [
        (Decimal("8000.00"), "5000-9999"),
        (Decimal("2999.99"), "0-2999"),
        (Decimal("9999.99"), "5000-9999"),
        (Decimal("10000.00"), "10000-19999"),
        (Decimal("123456.78"), "50000+"),
        (Decimal("-1.00"), "0-2999"),
    ],
)
def test_income_band_label_of_values_between_band_floors(value: Decimal, label: str) -> None:
    assert income_band_label(value) == label


@given(age=STORED_AGE)
def test_age_band_label_is_the_band_containing_any_stored_age(age: int) -> None:
    label = age_band_label(age)

    assert label in AGE_LABELS
    if label == "under-18":
        assert age < AGE_BANDS[0][0]
    elif label == "over-120":
        assert age > AGE_BANDS[-1][1]
    else:
        low, high = (int(part) for part in label.split("-"))
        assert low <= age <= high


def test_age_over_the_last_band_is_not_labelled_a_minor() -> None:
    assert age_band_label(121) == "over-120"
    assert age_band_label(32767) == "over-120"


# --- Through the partner API and pings ------------------------------------------------------


@pytest.mark.django_db
@db_examples
@given(income=STORED_INCOME, age=STORED_AGE)
def test_lead_list_detail_and_ping_never_fail_on_a_stored_band_value(
    partner: Partner, lead: Lead, income: Decimal, age: int
) -> None:
    Referral.objects.filter(pk=lead.referral_id).update(income_band_floor=income, age=age)
    client: APIClient = partner_client(partner)

    listed = client.get("/api/v1/partner/leads")
    detail = client.get(f"/api/v1/partner/leads/{lead.id}")

    assert listed.status_code == 200, listed.content
    assert detail.status_code == 200, detail.content
    (item,) = listed.json()["results"]
    expected = {"income_band": income_band_label(income), "age_band": age_band_label(age)}
    assert {key: item[key] for key in expected} == expected
    assert {key: detail.json()[key] for key in expected} == expected
    ping = ping_payload(Referral.objects.get(pk=lead.referral_id), "ping_1")
    assert {key: ping[key] for key in expected} == expected
