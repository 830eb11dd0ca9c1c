"""``lead.delivered``: a signed webhook when a lead becomes delivered (direct post accepted,
ping-post winner posted, pull-mode lead read the first time), queued in the transaction that
delivers it, once per lead, with ids and times only."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
from rest_framework.test import APIClient

from marketplace import delivery
from marketplace.models import Lead, LeadStatus, Referral
from partners.models import DeliveryMode, WebhookMessage
from tests.conftest import SimulatedPartner, partner_client
from tests.factories import referral_payload
from tests.marketplace.conftest import api_post, pii_strings

pytestmark = pytest.mark.django_db

DATA_KEYS = {"lead_id", "product_id", "delivered_at", "mode", "delivery_mode"}


@pytest.fixture
def refer(
    source_client: APIClient, django_capture_on_commit_callbacks: Any
) -> Callable[..., Referral]:
    def post(payload: dict[str, Any] | None = None) -> Referral:
        with django_capture_on_commit_callbacks(execute=True):
            response = api_post(source_client, payload or referral_payload())
        assert response.status_code == 201, response.content
        return Referral.objects.get(pk=response.json()["id"])

    return post


def delivered_webhooks(sim: SimulatedPartner) -> list[dict[str, Any]]:
    return [
        w
        for w in sim.simulator.received(sim.partner.slug)["webhooks"]
        if w["type"] == "lead.delivered"
    ]


def test_an_accepted_direct_post_sends_one_signed_lead_delivered_webhook(
    simulator_factory: Callable[..., SimulatedPartner], refer: Callable[..., Referral]
) -> None:
    sim = simulator_factory()
    payload = referral_payload()

    referral = refer(payload)

    lead = Lead.objects.get(referral=referral)
    assert lead.status == LeadStatus.DELIVERED
    (message,) = WebhookMessage.objects.filter(event_type="lead.delivered")
    assert message.dedupe_key == f"lead.delivered:{lead.id}"
    # The simulator checks every webhook with the official standardwebhooks library and
    # answers 401 to a bad signature: it took this one.
    assert sim.simulator.stats()[sim.partner.slug]["bad_signatures"] == 0
    (webhook,) = delivered_webhooks(sim)
    assert set(webhook["data"]) == DATA_KEYS
    assert webhook["data"]["lead_id"] == str(lead.id)
    assert webhook["data"]["product_id"] == str(sim.product.id)
    assert webhook["data"]["mode"] == "live"
    assert webhook["data"]["delivery_mode"] == DeliveryMode.DIRECT_POST
    assert webhook["data"]["delivered_at"] == lead.delivered_at.isoformat()
    message.refresh_from_db()
    assert message.status == "delivered"
    text = str(webhook)
    for value in pii_strings(payload):
        assert value not in text


def test_a_rejected_post_sends_no_lead_delivered(
    simulator_factory: Callable[..., SimulatedPartner], refer: Callable[..., Referral]
) -> None:
    sim = simulator_factory(accept_rate=0.0)

    refer()

    assert not WebhookMessage.objects.filter(event_type="lead.delivered").exists()
    assert delivered_webhooks(sim) == []


def test_delivering_again_does_not_send_it_twice(
    simulator_factory: Callable[..., SimulatedPartner],
    refer: Callable[..., Referral],
    django_capture_on_commit_callbacks: Any,
) -> None:
    sim = simulator_factory()
    lead = Lead.objects.get(referral=refer())

    with django_capture_on_commit_callbacks(execute=True):
        again = delivery.deliver(lead_id=lead.id)
        # Even a second notification for the lead is one message (dedupe key).
        delivery.notify_delivered(lead=lead, delivered_at=lead.delivered_at)

    assert again.outcome == "skipped"
    assert WebhookMessage.objects.filter(event_type="lead.delivered").count() == 1
    assert len(delivered_webhooks(sim)) == 1


def test_a_ping_post_winner_gets_lead_delivered_once_posted(
    simulator_factory: Callable[..., SimulatedPartner],
    refer: Callable[..., Referral],
    settings: Any,
) -> None:
    settings.AUCTION_BUDGET_MS = 400
    sim = simulator_factory(bid_min=Decimal("30.00"), bid_max=Decimal("30.00"))
    sim.product.delivery_mode = DeliveryMode.PING_POST
    sim.product.ping_url = sim.simulator.url_for(sim.partner.slug, "ping")
    sim.product.save()

    lead = Lead.objects.get(referral=refer())

    (webhook,) = delivered_webhooks(sim)
    assert webhook["data"]["lead_id"] == str(lead.id)
    assert webhook["data"]["delivery_mode"] == DeliveryMode.PING_POST


def test_a_pull_lead_sends_lead_delivered_on_its_first_read_only(
    simulator_factory: Callable[..., SimulatedPartner],
    refer: Callable[..., Referral],
    django_capture_on_commit_callbacks: Any,
) -> None:
    sim = simulator_factory()
    sim.product.delivery_mode = DeliveryMode.PULL
    sim.product.save()
    lead = Lead.objects.get(referral=refer())
    assert lead.status == LeadStatus.AVAILABLE
    assert not WebhookMessage.objects.filter(event_type="lead.delivered").exists()
    client = partner_client(sim.partner)

    with django_capture_on_commit_callbacks(execute=True):
        first = client.get(f"/api/v1/partner/leads/{lead.id}")
        second = client.get(f"/api/v1/partner/leads/{lead.id}")

    assert (first.status_code, second.status_code) == (200, 200)
    (message,) = WebhookMessage.objects.filter(event_type="lead.delivered")
    assert message.payload["data"]["lead_id"] == str(lead.id)
    assert message.payload["data"]["delivery_mode"] == DeliveryMode.PULL
    (webhook,) = delivered_webhooks(sim)
    assert webhook["data"]["lead_id"] == str(lead.id)
    assert uuid.UUID(webhook["data"]["product_id"]) == sim.product.id
