"""Outbound webhooks: signed per Standard Webhooks (verified with the official library),
retried on a schedule, disabled on 410, logged, replayable, rotatable."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.utils import timezone
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from partners import outbound
from partners.models import MessageStatus, WebhookEndpoint, WebhookMessage
from partners.webhooks import create_endpoint
from tests.factories import PartnerFactory


class Receiver:
    """A partner's webhook receiver on loopback answering a scripted status per request."""

    def __init__(self) -> None:
        self.statuses: list[int] = []
        self.requests: list[tuple[dict[str, str], bytes]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                receiver.requests.append(({k.lower(): v for k, v in self.headers.items()}, body))
                status = receiver.statuses.pop(0) if receiver.statuses else 204
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_port}/hooks"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.server.shutdown()


@pytest.fixture
def endpoint(db: None, receiver: Receiver) -> tuple[WebhookEndpoint, str]:
    return create_endpoint(partner=PartnerFactory(), url=receiver.url)


def _enqueue(endpoint: WebhookEndpoint, key: str = "k1") -> WebhookMessage:
    (message,) = outbound.enqueue(
        partner_id=endpoint.partner_id,
        event_type="lead.delivered",
        data={"lead_id": "abc"},
        dedupe_key=key,
    )
    return message


def test_delivered_message_verifies_with_the_official_library(endpoint, receiver):
    endpoint_obj, secret = endpoint
    message = _enqueue(endpoint_obj)
    assert outbound.attempt(message.id) == MessageStatus.DELIVERED
    (headers, body) = receiver.requests[0]
    payload = Webhook(secret).verify(body, headers)
    assert payload["type"] == "lead.delivered" and payload["data"] == {"lead_id": "abc"}
    assert headers["webhook-id"] == message.id
    with pytest.raises(WebhookVerificationError):
        Webhook("whsec_" + "A" * 32).verify(body, headers)
    message.refresh_from_db()
    assert message.delivered_at is not None
    assert message.attempt_log.get().http_status == 204


def test_same_event_enqueued_twice_is_one_message(endpoint):
    _enqueue(endpoint[0], key="same")
    assert (
        outbound.enqueue(
            partner_id=endpoint[0].partner_id,
            event_type="lead.delivered",
            data={},
            dedupe_key="same",
        )
        == []
    )
    assert WebhookMessage.objects.count() == 1


def test_failure_schedules_the_next_attempt_with_the_same_id(endpoint, receiver):
    receiver.statuses = [500, 204]
    message = _enqueue(endpoint[0])
    assert outbound.attempt(message.id) == MessageStatus.PENDING
    message.refresh_from_db()
    assert message.attempts == 1
    assert message.next_attempt_at > timezone.now() + timedelta(seconds=3)
    assert outbound.attempt(message.id) == "skipped"  # not due yet
    assert outbound.due_message_ids() == []
    WebhookMessage.objects.filter(pk=message.pk).update(next_attempt_at=timezone.now())
    assert outbound.due_message_ids() == [message.id]
    assert outbound.attempt(message.id) == MessageStatus.DELIVERED
    ids = {headers["webhook-id"] for headers, _ in receiver.requests}
    assert ids == {message.id}
    assert [a.error for a in message.attempt_log.order_by("attempted_at")] == ["http 500", ""]


def test_retries_span_about_three_days_then_give_up(endpoint, receiver):
    total = sum(outbound.RETRY_SCHEDULE, timedelta())
    assert timedelta(days=2, hours=12) <= total <= timedelta(days=3, hours=12)
    receiver.statuses = [503] * (len(outbound.RETRY_SCHEDULE) + 1)
    message = _enqueue(endpoint[0])
    statuses = []
    for _ in range(len(outbound.RETRY_SCHEDULE) + 1):
        WebhookMessage.objects.filter(pk=message.pk).update(next_attempt_at=timezone.now())
        statuses.append(outbound.attempt(message.id))
    assert statuses[-1] == MessageStatus.FAILED
    assert set(statuses[:-1]) == {MessageStatus.PENDING}


def test_410_disables_the_endpoint(endpoint, receiver):
    receiver.statuses = [410]
    message = _enqueue(endpoint[0])
    assert outbound.attempt(message.id) == MessageStatus.FAILED
    endpoint[0].refresh_from_db()
    assert not endpoint[0].is_active and "410" in endpoint[0].disabled_reason
    assert (
        outbound.enqueue(
            partner_id=endpoint[0].partner_id,
            event_type="lead.delivered",
            data={},
            dedupe_key="later",
        )
        == []
    )


def test_unreachable_endpoint_is_an_error_not_a_crash(db):
    endpoint, _ = create_endpoint(partner=PartnerFactory(), url="http://127.0.0.1:9/hooks")
    message = _enqueue(endpoint)
    assert outbound.attempt(message.id) == MessageStatus.PENDING
    assert message.attempt_log.get().error == "ConnectError"


def test_replay_sends_a_delivered_message_again(
    endpoint, receiver, django_capture_on_commit_callbacks
):
    message = _enqueue(endpoint[0])
    outbound.attempt(message.id)
    with django_capture_on_commit_callbacks(execute=True):
        outbound.replay(message_id=message.id)
    assert len(receiver.requests) == 2
    message.refresh_from_db()
    assert message.status == MessageStatus.DELIVERED


def test_rotation_signs_with_both_secrets_for_the_overlap(endpoint, receiver):
    endpoint_obj, old_secret = endpoint
    new_secret = outbound.rotate_secret(endpoint_id=endpoint_obj.pk)
    message = _enqueue(endpoint_obj)
    outbound.attempt(message.id)
    headers, body = receiver.requests[0]
    assert len(headers["webhook-signature"].split(" ")) == 2
    assert Webhook(old_secret).verify(body, headers)["data"] == {"lead_id": "abc"}
    assert Webhook(new_secret).verify(body, headers)["data"] == {"lead_id": "abc"}
    # After the overlap only the new secret signs.
    WebhookEndpoint.objects.filter(pk=endpoint_obj.pk).update(
        previous_secret_expires_at=timezone.now() - timedelta(seconds=1)
    )
    second = _enqueue(endpoint_obj, key="k2")
    outbound.attempt(second.id)
    headers, body = receiver.requests[1]
    assert len(headers["webhook-signature"].split(" ")) == 1
    with pytest.raises(WebhookVerificationError):
        Webhook(old_secret).verify(body, headers)
    assert json.loads(body)["type"] == "lead.delivered"
