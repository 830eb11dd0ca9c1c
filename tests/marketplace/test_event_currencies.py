"""Every amount a partner reports carries its currency: stated (`currency`) or, when left
out, the referral's; stored on the event, shown back, part of the event's identity on
replay, and never compared as a bare number with an amount in another currency."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from marketplace.models import Lead, LeadEvent, LeadStatus, Referral
from partners.models import Partner
from tests.conftest import partner_client
from tests.factories import PartnerFactory, ProductFactory, referral_payload
from tests.marketplace.conftest import create_referral, set_lead_status

pytestmark = pytest.mark.django_db


@pytest.fixture
def partner() -> Partner:
    partner = PartnerFactory()
    ProductFactory(partner=partner)
    return partner


@pytest.fixture
def client(partner: Partner) -> APIClient:
    return partner_client(partner)


@pytest.fixture
def lead(source: Any, consent_text: object, partner: Partner) -> Lead:
    referral = create_referral(source, referral_payload())
    return set_lead_status(referral.leads.get(partner=partner), LeadStatus.DELIVERED)


def report(client: APIClient, lead: Lead, event_type: str, **fields: Any) -> Any:
    body = {
        "event_id": f"{event_type}-{uuid.uuid4().hex[:8]}",
        "type": event_type,
        "occurred_at": timezone.now().isoformat(),
        **fields,
    }
    return client.post(f"/api/v1/partner/leads/{lead.id}/events", body, format="json")


def error(response: Any) -> dict[str, Any]:
    body: dict[str, Any] = response.json()["error"]
    return body


def test_an_amount_without_a_currency_is_in_the_referrals_currency(
    client: APIClient, lead: Lead
) -> None:
    # Intake takes CNY only today; the default follows the referral, whatever it is.
    Referral.objects.filter(pk=lead.referral_id).update(currency="HKD")

    response = report(client, lead, "approved", amount="8000.00", apr="0.1800")

    assert response.status_code == 201, response.content
    assert response.json()["currency"] == "HKD"
    assert LeadEvent.objects.get(lead=lead).currency == "HKD"
    lead.refresh_from_db()
    assert (lead.approved_amount, lead.outcome_currency) == (8000, "HKD")


def test_a_stated_currency_is_stored_and_shown_on_the_event_and_the_lead(
    client: APIClient, lead: Lead
) -> None:
    approved = report(client, lead, "approved", amount="1100.00", apr="0.1800", currency="USD")
    funded = report(client, lead, "funded", principal="1000.00", currency="USD")

    assert (approved.status_code, funded.status_code) == (201, 201), funded.content
    assert funded.json()["currency"] == "USD"
    assert sorted(LeadEvent.objects.filter(lead=lead).values_list("type", "currency")) == [
        ("approved", "USD"),
        ("funded", "USD"),
    ]
    detail = client.get(f"/api/v1/partner/leads/{lead.id}").json()
    assert {(e["type"], e["currency"]) for e in detail["events"]} == {
        ("approved", "USD"),
        ("funded", "USD"),
    }


def test_events_without_an_amount_carry_no_currency(client: APIClient, lead: Lead) -> None:
    accepted = report(client, lead, "accepted")
    with_currency = report(client, lead, "rejected", reason="credit_policy", currency="CNY")

    assert accepted.status_code == 201
    assert accepted.json()["currency"] == ""
    assert with_currency.status_code == 422
    assert list(error(with_currency)["details"]) == ["currency"]
    assert LeadEvent.objects.filter(lead=lead).count() == 1


@pytest.mark.parametrize("currency", ["XYZ", "usd", "RMB", 156, ""])
def test_an_unknown_currency_is_a_400_naming_currency(
    client: APIClient, lead: Lead, currency: object
) -> None:
    response = report(client, lead, "funded", principal="7500.00", currency=currency)

    if currency == "":  # blank is "not given": the referral's currency
        assert response.status_code == 201
        assert response.json()["currency"] == "CNY"
        return
    assert response.status_code == 400, response.content
    assert list(error(response)["details"]) == ["currency"]
    assert not LeadEvent.objects.filter(lead=lead).exists()


def test_a_principal_in_another_currency_than_the_approved_amount_is_refused(
    client: APIClient, lead: Lead
) -> None:
    report(client, lead, "approved", amount="8000.00", apr="0.1800")  # CNY

    # 1000 USD is not "below 8000": the numbers are not comparable as they stand.
    response = report(client, lead, "funded", principal="1000.00", currency="USD")

    assert response.status_code == 422
    assert error(response)["code"] == "currency_mismatch"
    assert list(error(response)["details"]) == ["currency"]
    lead.refresh_from_db()
    assert (lead.status, lead.funded_principal) == (LeadStatus.APPROVED, None)


def test_an_approved_amount_in_another_currency_than_the_principal_is_refused(
    client: APIClient, lead: Lead
) -> None:
    assert report(client, lead, "funded", principal="7500.00", currency="EUR").status_code == 201

    response = report(client, lead, "approved", amount="9000.00", apr="0.1800")  # CNY

    assert response.status_code == 422
    assert error(response)["code"] == "currency_mismatch"


def test_revenue_in_another_currency_than_the_principal_is_refused(
    client: APIClient, lead: Lead
) -> None:
    report(client, lead, "approved", amount="8000.00", apr="0.1800")
    report(client, lead, "funded", principal="7500.00")

    other = report(client, lead, "revenue", amount="100.00", currency="USD")
    same = report(client, lead, "revenue", amount="100.00", currency="CNY")

    assert other.status_code == 422
    assert error(other)["code"] == "currency_mismatch"
    assert same.status_code == 201, same.content
    assert same.json()["currency"] == "CNY"


def test_a_replay_in_another_currency_is_an_event_id_conflict(
    client: APIClient, lead: Lead
) -> None:
    event = {
        "event_id": "e-1",
        "occurred_at": timezone.now().isoformat(),
        "amount": "8000.00",
        "apr": "0.1800",
    }
    first = report(client, lead, "approved", **event)
    # Leaving the currency out and naming the referral's are the same event.
    same = report(client, lead, "approved", **event, currency="CNY")
    other = report(client, lead, "approved", **event, currency="USD")

    assert (first.status_code, same.status_code) == (201, 200)
    assert other.status_code == 409
    assert error(other)["code"] == "event_id_conflict"
    assert list(LeadEvent.objects.filter(lead=lead).values_list("currency", flat=True)) == ["CNY"]
