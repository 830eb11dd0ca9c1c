"""Races that only a real database shows: run on PostgreSQL only (SQLite serialises writes)."""

from __future__ import annotations

from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import pytest
from rest_framework.test import APIClient

from marketplace import delivery
from marketplace.models import Lead, LeadEvent, LeadStatus, Referral
from partners.keys import issue_api_key
from partners.models import TrafficSource
from tests.concurrency import run_concurrently
from tests.conftest import SimulatedPartner, partner_client
from tests.factories import PartnerFactory, ProductFactory, referral_payload
from tests.marketplace.conftest import REFERRALS_URL, create_referral, set_lead_status

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def source_client_for(source: TrafficSource) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {issue_api_key(source=source).plaintext}")
    return client


@pytest.fixture
def no_delivery(monkeypatch: pytest.MonkeyPatch) -> None:
    """Leads stay matched: intake commits here, so the on-commit delivery would run."""
    monkeypatch.setattr("marketplace.tasks.deliver_lead", SimpleNamespace(delay=lambda _: None))


def status_of(response: Any) -> int | str:
    return response.status_code if hasattr(response, "status_code") else repr(response)


def test_concurrent_referrals_with_one_source_reference_make_one_referral_and_a_409(
    source: TrafficSource, consent_text: object, no_delivery: None
) -> None:
    ProductFactory()
    clients = [source_client_for(source) for _ in range(3)]

    def post(client: APIClient) -> Callable[[], Any]:
        return lambda: client.post(
            REFERRALS_URL, referral_payload(source_reference="APP-7"), format="json"
        )

    responses = run_concurrently(*(post(client) for client in clients))

    assert sorted(map(status_of, responses), key=str) == [201, 409, 409]
    for response in responses:
        if response.status_code == 409:
            assert response.json()["error"]["code"] == "duplicate_source_reference"
    assert Referral.objects.filter(source_reference="APP-7").count() == 1


def test_concurrent_requests_with_one_idempotency_key_make_one_referral(
    source: TrafficSource, consent_text: object, no_delivery: None
) -> None:
    client = source_client_for(source)
    body = referral_payload()

    def post() -> Any:
        return client.post(
            REFERRALS_URL, body, format="json", headers={"Idempotency-Key": "same-key"}
        )

    responses = run_concurrently(post, post, post, post)

    statuses = list(map(status_of, responses))
    assert set(statuses) <= {201, 409}, statuses
    assert 201 in statuses
    assert Referral.objects.count() == 1


def test_daily_cap_holds_under_concurrent_intake(
    source: TrafficSource, consent_text: object, no_delivery: None
) -> None:
    capped = ProductFactory(daily_cap=2)

    results = run_concurrently(
        *(lambda: create_referral(source, referral_payload()) for _ in range(5))
    )

    assert all(isinstance(result, Referral) for result in results), results
    assert Lead.objects.filter(product=capped).count() == 2


def test_the_same_event_posted_concurrently_is_stored_once(
    source: TrafficSource, consent_text: object, no_delivery: None
) -> None:
    partner = PartnerFactory()
    ProductFactory(partner=partner)
    lead = create_referral(source, referral_payload()).leads.get()
    set_lead_status(lead, LeadStatus.DELIVERED)
    client = partner_client(partner)
    # One fixed time after delivery keeps the three bodies identical.
    body = {"event_id": "evt-1", "type": "accepted", "occurred_at": lead.delivered_at.isoformat()}

    def post() -> Any:
        return client.post(f"/api/v1/partner/leads/{lead.id}/events", body, format="json")

    responses = run_concurrently(post, post, post)

    assert sorted(map(status_of, responses), key=str) == [200, 200, 201]
    assert LeadEvent.objects.count() == 1
    assert len({response.json()["id"] for response in responses}) == 1


def test_different_events_posted_concurrently_all_count(
    source: TrafficSource, consent_text: object, no_delivery: None
) -> None:
    partner = PartnerFactory()
    ProductFactory(partner=partner)
    lead = create_referral(source, referral_payload()).leads.get()
    set_lead_status(lead, LeadStatus.DELIVERED)
    client = partner_client(partner)
    bodies = [
        {"event_id": "a", "type": "accepted"},
        {"event_id": "b", "type": "approved", "amount": "8000.00", "apr": "0.1800"},
        {"event_id": "c", "type": "funded", "principal": "8000.00"},
    ]

    def post(body: dict[str, str]) -> Callable[[], Any]:
        full = {**body, "occurred_at": lead.delivered_at.isoformat()}
        return lambda: client.post(f"/api/v1/partner/leads/{lead.id}/events", full, format="json")

    responses = run_concurrently(*(post(body) for body in bodies))

    assert list(map(status_of, responses)) == [201, 201, 201]
    lead.refresh_from_db()
    assert lead.status == LeadStatus.FUNDED
    assert lead.approved_amount is not None
    assert lead.funded_principal is not None


def test_a_lead_delivered_by_two_workers_at_once_is_posted_once(
    source: TrafficSource,
    consent_text: object,
    no_delivery: None,
    simulator_factory: Callable[..., SimulatedPartner],
) -> None:
    sim = simulator_factory(latency_ms=300)
    lead = create_referral(source, referral_payload()).leads.get()

    results = run_concurrently(
        lambda: delivery.deliver(lead_id=lead.id), lambda: delivery.deliver(lead_id=lead.id)
    )

    assert sorted(getattr(result, "outcome", repr(result)) for result in results) == [
        delivery.IN_FLIGHT,  # the loser comes back when the winner's claim ends...
        "success",
    ]
    assert sim.simulator.stats()[sim.partner.slug]["posts"] == 1
    # ...and then finds the lead delivered.
    assert delivery.deliver(lead_id=lead.id).outcome == delivery.SKIPPED
    assert sim.simulator.stats()[sim.partner.slug]["posts"] == 1
