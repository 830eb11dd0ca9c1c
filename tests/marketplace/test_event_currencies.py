"""Every amount a partner reports carries its currency: stated (`currency`) or, when left
out, the referral's; stored on the event, shown back, part of the event's identity on
replay, and never compared as a bare number with an amount in another currency."""

from __future__ import annotations

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from marketplace.models import Lead, LeadEvent, LeadStatus, Referral
from tests.marketplace.conftest import error_body, report_event

pytestmark = pytest.mark.django_db


def test_an_amount_without_a_currency_is_in_the_referrals_currency(
    client: APIClient, lead: Lead
) -> None:
    # Intake takes CNY only today; the default follows the referral, whatever it is.
    Referral.objects.filter(pk=lead.referral_id).update(currency="HKD")

    response = report_event(client, lead, "approved", amount="8000.00", apr="0.1800")

    assert response.status_code == 201, response.content
    assert response.json()["currency"] == "HKD"
    assert LeadEvent.objects.get(lead=lead).currency == "HKD"
    lead.refresh_from_db()
    assert (lead.approved_amount, lead.outcome_currency) == (8000, "HKD")


def test_a_stated_currency_is_stored_and_shown_on_the_event_and_the_lead(
    client: APIClient, lead: Lead
) -> None:
    approved = report_event(
        client, lead, "approved", amount="1100.00", apr="0.1800", currency="USD"
    )
    funded = report_event(client, lead, "funded", principal="1000.00", currency="USD")

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
    accepted = report_event(client, lead, "accepted")
    with_currency = report_event(client, lead, "rejected", reason="credit_policy", currency="CNY")

    assert accepted.status_code == 201
    assert accepted.json()["currency"] == ""
    assert with_currency.status_code == 422
    assert list(error_body(with_currency)["details"]) == ["currency"]
    assert LeadEvent.objects.filter(lead=lead).count() == 1


@pytest.mark.parametrize("currency", ["XYZ", "usd", "RMB", 156, ""])
def test_an_unknown_currency_is_a_400_naming_currency(
    client: APIClient, lead: Lead, currency: object
) -> None:
    response = report_event(client, lead, "funded", principal="7500.00", currency=currency)

    if currency == "":  # blank is "not given": the referral's currency
        assert response.status_code == 201
        assert response.json()["currency"] == "CNY"
        return
    assert response.status_code == 400, response.content
    assert list(error_body(response)["details"]) == ["currency"]
    assert not LeadEvent.objects.filter(lead=lead).exists()


def test_a_principal_in_another_currency_than_the_approved_amount_is_refused(
    client: APIClient, lead: Lead
) -> None:
    report_event(client, lead, "approved", amount="8000.00", apr="0.1800")  # CNY

    # 1000 USD is not "below 8000": the numbers are not comparable as they stand.
    response = report_event(client, lead, "funded", principal="1000.00", currency="USD")

    assert response.status_code == 422
    assert error_body(response)["code"] == "currency_mismatch"
    assert list(error_body(response)["details"]) == ["currency"]
    lead.refresh_from_db()
    assert (lead.status, lead.funded_principal) == (LeadStatus.APPROVED, None)


def test_an_approved_amount_in_another_currency_than_the_principal_is_refused(
    client: APIClient, lead: Lead
) -> None:
    assert (
        report_event(client, lead, "funded", principal="7500.00", currency="EUR").status_code == 201
    )

    response = report_event(client, lead, "approved", amount="9000.00", apr="0.1800")  # CNY

    assert response.status_code == 422
    assert error_body(response)["code"] == "currency_mismatch"


def test_revenue_in_another_currency_than_the_principal_is_refused(
    client: APIClient, lead: Lead
) -> None:
    report_event(client, lead, "approved", amount="8000.00", apr="0.1800")
    report_event(client, lead, "funded", principal="7500.00")

    other = report_event(client, lead, "revenue", amount="100.00", currency="USD")
    same = report_event(client, lead, "revenue", amount="100.00", currency="CNY")

    assert other.status_code == 422
    assert error_body(other)["code"] == "currency_mismatch"
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
    first = report_event(client, lead, "approved", **event)
    # Leaving the currency out and naming the referral's are the same event.
    same = report_event(client, lead, "approved", **event, currency="CNY")
    other = report_event(client, lead, "approved", **event, currency="USD")

    assert (first.status_code, same.status_code) == (201, 200)
    assert other.status_code == 409
    assert error_body(other)["code"] == "event_id_conflict"
    assert list(LeadEvent.objects.filter(lead=lead).values_list("currency", flat=True)) == ["CNY"]
