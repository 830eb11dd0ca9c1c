"""Partners read their webhook messages (filters, the attempt log) and replay one; a
sandbox key sees only messages about sandbox traffic, a live key only the others; another
partner's is a 404."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from standardwebhooks.webhooks import Webhook

from partners import webhook_delivery
from partners.models import KeyMode, MessageStatus, WebhookEndpoint, WebhookMessage
from partners.webhook_signing import signing_secret
from tests.conftest import partner_client
from tests.partners.test_outbound_webhooks import Receiver

MESSAGES = "/api/v1/partner/webhook-messages"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.server.shutdown()


def test_the_list_is_the_partners_own_and_filters_by_status_and_event_type(
    partner, other_partner, make_message
):
    delivered = make_message(partner, status=MessageStatus.DELIVERED)
    failed = make_message(partner, event_type="consent.withdrawn", status=MessageStatus.FAILED)
    make_message(other_partner)
    client = partner_client(partner)

    def ids(**params: str) -> set[str]:
        return {row["id"] for row in client.get(MESSAGES, params).json()["results"]}

    assert ids() == {delivered.id, failed.id}
    assert ids(status="failed") == {failed.id}
    assert ids(event_type="lead.delivered") == {delivered.id}
    assert ids(event_type="consent.withdrawn", status="delivered") == set()
    bad = client.get(MESSAGES, {"status": "lost"})
    assert bad.status_code == 400 and "status" in bad.json()["error"]["details"]


def test_each_key_sees_only_messages_about_traffic_of_its_mode(partner, make_message):
    live = make_message(partner)
    sandbox = make_message(partner, is_sandbox=True)
    sandbox_client = partner_client(partner, KeyMode.SANDBOX)

    listed = {row["id"] for row in sandbox_client.get(MESSAGES).json()["results"]}

    assert listed == {sandbox.id}
    assert sandbox_client.get(f"{MESSAGES}/{live.id}").status_code == 404
    assert sandbox_client.post(f"{MESSAGES}/{live.id}/replay").status_code == 404
    live_client = partner_client(partner)
    live_listing = live_client.get(MESSAGES).json()["results"]
    assert {row["id"] for row in live_listing} == {live.id}
    assert live_client.get(f"{MESSAGES}/{sandbox.id}").status_code == 404


def test_detail_carries_the_attempt_log_newest_first(partner, make_message, receiver):
    message = make_message(partner, url=receiver.url)
    receiver.statuses = [503]
    webhook_delivery.attempt(message.id)
    WebhookMessage.objects.filter(pk=message.pk).update(next_attempt_at=message.created_at)
    webhook_delivery.attempt(message.id)

    body = partner_client(partner).get(f"{MESSAGES}/{message.id}").json()

    assert body["status"] == "delivered"
    assert body["endpoint_url"] == receiver.url
    assert [a["http_status"] for a in body["attempt_log"]] == [204, 503]
    assert body["attempt_log"][1]["error"] == "http 503"
    assert body["payload"]["type"] == "lead.delivered"


def test_replay_sends_the_message_again_with_the_same_id_and_a_valid_signature(
    partner, make_message, receiver, django_capture_on_commit_callbacks
):
    message = make_message(partner, status=MessageStatus.FAILED, url=receiver.url)

    with django_capture_on_commit_callbacks(execute=True):
        response = partner_client(partner).post(f"{MESSAGES}/{message.id}/replay")

    assert response.status_code == 202
    assert response.json()["id"] == message.id
    message.refresh_from_db()
    assert message.status == MessageStatus.DELIVERED
    assert message.attempts == 1
    ((headers, body),) = receiver.requests
    assert headers["webhook-id"] == message.id
    secret = signing_secret(partner)
    assert secret is not None
    assert Webhook(secret).verify(body, headers)["type"] == "lead.delivered"


def test_replay_to_a_disabled_endpoint_is_a_conflict_and_changes_nothing(partner, make_message):
    message = make_message(partner, status=MessageStatus.FAILED)
    WebhookEndpoint.objects.filter(pk=message.endpoint_id).update(is_active=False)

    response = partner_client(partner).post(f"{MESSAGES}/{message.id}/replay")

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "endpoint_disabled"
    message.refresh_from_db()
    assert (message.status, message.attempts) == (MessageStatus.FAILED, 3)


def test_another_partners_message_is_a_404_and_replaying_it_changes_nothing(
    partner, other_partner, make_message
):
    theirs = make_message(other_partner, status=MessageStatus.FAILED)
    client = partner_client(partner)

    assert client.get(f"{MESSAGES}/{theirs.id}").json()["error"]["code"] == "not_found"
    assert client.post(f"{MESSAGES}/{theirs.id}/replay").status_code == 404
    theirs.refresh_from_db()
    assert (theirs.status, theirs.attempts) == (MessageStatus.FAILED, 3)
