"""Outbound webhooks: signed per Standard Webhooks (verified with the official library),
retried on a schedule, disabled on 410, logged, replayable, rotatable."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import timedelta
from functools import partial
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from unittest import mock

import pytest
from django.db import connection, transaction
from django.utils import timezone
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from partners import tasks, webhook_delivery
from partners.models import MessageStatus, WebhookAttempt, WebhookEndpoint, WebhookMessage
from partners.webhook_signing import create_endpoint
from tests.concurrency import run_concurrently
from tests.factories import PartnerFactory


class Receiver:
    """A partner's webhook receiver on loopback answering a scripted status per request."""

    def __init__(self, default: int = 204) -> None:
        self.default = default
        self.statuses: list[int] = []
        self.requests: list[tuple[dict[str, str], bytes]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                receiver.requests.append(({k.lower(): v for k, v in self.headers.items()}, body))
                status = receiver.statuses.pop(0) if receiver.statuses else receiver.default
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
    (message,) = webhook_delivery.enqueue(
        partner_id=endpoint.partner_id,
        event_type="lead.delivered",
        data={"lead_id": "abc"},
        dedupe_key=key,
    )
    return message


def test_delivered_message_verifies_with_the_official_library(endpoint, receiver):
    endpoint_obj, secret = endpoint
    message = _enqueue(endpoint_obj)
    assert webhook_delivery.attempt(message.id) == MessageStatus.DELIVERED
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
        webhook_delivery.enqueue(
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
    assert webhook_delivery.attempt(message.id) == MessageStatus.PENDING
    message.refresh_from_db()
    assert message.attempts == 1
    assert message.next_attempt_at > timezone.now() + timedelta(seconds=3)
    assert webhook_delivery.attempt(message.id) == "skipped"  # not due yet
    assert webhook_delivery.due_message_ids() == []
    WebhookMessage.objects.filter(pk=message.pk).update(next_attempt_at=timezone.now())
    assert webhook_delivery.due_message_ids() == [message.id]
    assert webhook_delivery.attempt(message.id) == MessageStatus.DELIVERED
    ids = {headers["webhook-id"] for headers, _ in receiver.requests}
    assert ids == {message.id}
    assert [a.error for a in message.attempt_log.order_by("attempted_at")] == ["http 500", ""]


def test_retries_span_about_three_days_then_give_up(endpoint, receiver):
    total = sum(webhook_delivery.RETRY_SCHEDULE, timedelta())
    assert timedelta(days=2, hours=12) <= total <= timedelta(days=3, hours=12)
    receiver.statuses = [503] * (len(webhook_delivery.RETRY_SCHEDULE) + 1)
    message = _enqueue(endpoint[0])
    statuses = []
    for _ in range(len(webhook_delivery.RETRY_SCHEDULE) + 1):
        WebhookMessage.objects.filter(pk=message.pk).update(next_attempt_at=timezone.now())
        statuses.append(webhook_delivery.attempt(message.id))
    assert statuses[-1] == MessageStatus.FAILED
    assert set(statuses[:-1]) == {MessageStatus.PENDING}


def test_410_disables_the_endpoint(endpoint, receiver):
    receiver.statuses = [410]
    message = _enqueue(endpoint[0])
    assert webhook_delivery.attempt(message.id) == MessageStatus.FAILED
    endpoint[0].refresh_from_db()
    assert not endpoint[0].is_active and "410" in endpoint[0].disabled_reason
    assert (
        webhook_delivery.enqueue(
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
    assert webhook_delivery.attempt(message.id) == MessageStatus.PENDING
    assert message.attempt_log.get().error == "ConnectError"


def test_replay_sends_a_delivered_message_again(
    endpoint, receiver, django_capture_on_commit_callbacks
):
    message = _enqueue(endpoint[0])
    webhook_delivery.attempt(message.id)
    with django_capture_on_commit_callbacks(execute=True):
        webhook_delivery.replay(message_id=message.id)
    assert len(receiver.requests) == 2
    message.refresh_from_db()
    assert message.status == MessageStatus.DELIVERED


def test_rotation_signs_with_both_secrets_for_the_overlap(endpoint, receiver):
    endpoint_obj, old_secret = endpoint
    new_secret = webhook_delivery.rotate_secret(endpoint_id=endpoint_obj.pk)
    message = _enqueue(endpoint_obj)
    webhook_delivery.attempt(message.id)
    headers, body = receiver.requests[0]
    assert len(headers["webhook-signature"].split(" ")) == 2
    assert Webhook(old_secret).verify(body, headers)["data"] == {"lead_id": "abc"}
    assert Webhook(new_secret).verify(body, headers)["data"] == {"lead_id": "abc"}
    # After the overlap only the new secret signs.
    WebhookEndpoint.objects.filter(pk=endpoint_obj.pk).update(
        previous_secret_expires_at=timezone.now() - timedelta(seconds=1)
    )
    second = _enqueue(endpoint_obj, key="k2")
    webhook_delivery.attempt(second.id)
    headers, body = receiver.requests[1]
    assert len(headers["webhook-signature"].split(" ")) == 1
    with pytest.raises(WebhookVerificationError):
        Webhook(old_secret).verify(body, headers)
    assert json.loads(body)["type"] == "lead.delivered"


@pytest.fixture
def receivers() -> Iterator[dict[int, Receiver]]:
    made = {status: Receiver(default=status) for status in (204, 500, 410)}
    yield made
    for r in made.values():
        r.server.shutdown()


def test_one_batch_settles_each_outcome(db, receivers):
    ok, _ = create_endpoint(partner=PartnerFactory(), url=receivers[204].url)
    broken, _ = create_endpoint(partner=PartnerFactory(), url=receivers[500].url)
    gone, _ = create_endpoint(partner=PartnerFactory(), url=receivers[410].url)
    down, _ = create_endpoint(partner=PartnerFactory(), url="http://127.0.0.1:9/hooks")
    delivered, retried, refused, unreachable = (_enqueue(e) for e in (ok, broken, gone, down))
    # Another pending message to the gone endpoint, not yet due: failed with its endpoint.
    later = _enqueue(gone, key="k2")
    WebhookMessage.objects.filter(pk=later.pk).update(
        next_attempt_at=timezone.now() + timedelta(hours=1)
    )
    ids = [delivered.id, retried.id, refused.id, unreachable.id, later.id, "msg_missing"]

    statuses = webhook_delivery.attempt_many(ids)

    assert statuses == {
        delivered.id: MessageStatus.DELIVERED,
        retried.id: MessageStatus.PENDING,
        refused.id: MessageStatus.FAILED,
        unreachable.id: MessageStatus.PENDING,
        later.id: "skipped",
        "msg_missing": "skipped",
    }
    rows = {m.id: m for m in WebhookMessage.objects.all()}
    assert rows[delivered.id].status == MessageStatus.DELIVERED
    assert rows[delivered.id].delivered_at is not None
    assert rows[delivered.id].next_attempt_at is None
    for pending in (retried, unreachable):
        assert rows[pending.id].status == MessageStatus.PENDING
        assert rows[pending.id].attempts == 1
        assert rows[pending.id].next_attempt_at > timezone.now() + timedelta(seconds=3)
    assert rows[refused.id].status == rows[later.id].status == MessageStatus.FAILED
    assert rows[later.id].attempts == 0
    gone.refresh_from_db()
    ok.refresh_from_db()
    assert not gone.is_active and "410" in gone.disabled_reason and ok.is_active
    log = {a.message_id: (a.http_status, a.error) for a in WebhookAttempt.objects.all()}
    assert log == {
        delivered.id: (204, ""),
        retried.id: (500, "http 500"),
        refused.id: (410, "http 410"),
        unreachable.id: (None, "ConnectError"),
    }
    # Each POST carried its own message's id.
    for status, message in ((204, delivered), (500, retried), (410, refused)):
        assert [h["webhook-id"] for h, _ in receivers[status].requests] == [message.id]


def test_a_failed_message_in_a_batch_is_retried_with_the_same_id(endpoint, receiver):
    receiver.statuses = [500]
    first, second = _enqueue(endpoint[0]), _enqueue(endpoint[0], key="k2")
    with mock.patch.object(webhook_delivery, "POST_CONCURRENCY", 1):  # scripted statuses in order
        assert webhook_delivery.attempt_many([first.id, second.id]) == {
            first.id: MessageStatus.PENDING,
            second.id: MessageStatus.DELIVERED,
        }
    WebhookMessage.objects.filter(pk=first.pk).update(next_attempt_at=timezone.now())
    assert tasks.deliver_webhooks([first.id, second.id]) == {
        first.id: MessageStatus.DELIVERED,
        second.id: "skipped",
    }
    assert [h["webhook-id"] for h, _ in receiver.requests] == [first.id, second.id, first.id]


def test_claims_row_by_row_without_returning(endpoint, receiver):
    messages = [_enqueue(endpoint[0], key=f"k{i}") for i in range(3)]
    with mock.patch.object(webhook_delivery, "_can_return", return_value=False):
        statuses = webhook_delivery.attempt_many([m.id for m in messages])
        assert set(statuses.values()) == {MessageStatus.DELIVERED}
        assert webhook_delivery.attempt_many([m.id for m in messages]) == dict.fromkeys(
            [m.id for m in messages], "skipped"
        )
    assert len(receiver.requests) == 3


def test_enqueues_in_one_transaction_queue_batches_of_ids(endpoint):
    with (
        mock.patch.object(tasks.deliver_webhooks, "delay") as delay,
        transaction.atomic(),
    ):
        made = [_enqueue(endpoint[0], key=f"k{i}") for i in range(webhook_delivery.BATCH_SIZE + 3)]
        # Inside the test's transaction nothing commits: run the callbacks by hand.
        for entry in list(connection.run_on_commit):
            entry[1]()
    batches = [call.args[0] for call in delay.call_args_list]
    assert [len(b) for b in batches] == [webhook_delivery.BATCH_SIZE, 3]
    assert [i for batch in batches for i in batch] == [m.id for m in made]


def test_dispatch_queues_due_messages_in_batches(endpoint):
    made = [_enqueue(endpoint[0], key=f"k{i}") for i in range(webhook_delivery.BATCH_SIZE + 1)]
    WebhookMessage.objects.filter(pk=made[0].pk).update(
        next_attempt_at=timezone.now() + timedelta(hours=1)
    )
    with mock.patch.object(tasks.deliver_webhooks, "delay") as delay:
        assert tasks.dispatch_due_webhooks() == webhook_delivery.BATCH_SIZE
    batches = [call.args[0] for call in delay.call_args_list]
    assert len(batches) == 1 and set(batches[0]) == {m.id for m in made[1:]}


@pytest.mark.postgres
def test_concurrent_batches_post_each_message_once(transactional_db, receiver):
    endpoint, _ = create_endpoint(partner=PartnerFactory(), url=receiver.url)
    with mock.patch.object(tasks.deliver_webhooks, "delay"):
        ids = [_enqueue(endpoint, key=f"k{i}").id for i in range(40)]

    results = run_concurrently(
        partial(webhook_delivery.attempt_many, ids[:30]),
        partial(webhook_delivery.attempt_many, list(reversed(ids[10:]))),
    )

    sent = [headers["webhook-id"] for headers, _ in receiver.requests]
    assert sorted(sent) == sorted(ids)  # every message POSTed, none twice
    delivered = [i for r in results for i, status in r.items() if status == "delivered"]
    assert sorted(delivered) == sorted(ids)
    assert WebhookAttempt.objects.count() == len(ids)
    assert set(WebhookMessage.objects.values_list("status", flat=True)) == {"delivered"}


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        pytest.param("http://127.0.0.1:9/ho\x7foks", "InvalidURL", id="control-character"),
        pytest.param("http://" + "a" * 70 + ".example/hooks", "UnicodeError", id="label-too-long"),
        pytest.param("http://[::1/hooks", "partner URL is malformed", id="unclosed-ipv6"),
    ],
)
def test_an_endpoint_url_httpx_cannot_use_fails_its_message_and_not_the_batch(
    db, receiver, url, reason
):
    broken, _ = create_endpoint(partner=PartnerFactory(), url=url)
    fine, _ = create_endpoint(partner=PartnerFactory(), url=receiver.url)
    stuck, sent = _enqueue(broken), _enqueue(fine)

    with mock.patch.object(webhook_delivery, "POST_CONCURRENCY", 1):  # the bad one first, in order
        statuses = webhook_delivery.attempt_many([stuck.id, sent.id])

    # A URL that cannot work until the partner fixes it: failed at once, replayable.
    assert statuses == {stuck.id: MessageStatus.FAILED, sent.id: MessageStatus.DELIVERED}
    assert [(a.http_status, a.error) for a in stuck.attempt_log.all()] == [(None, reason)]
    assert [h["webhook-id"] for h, _ in receiver.requests] == [sent.id]
