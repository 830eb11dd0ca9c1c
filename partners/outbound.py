"""Outbound webhooks to partners, per the Standard Webhooks specification.

``enqueue`` stores one message per subscribed endpoint inside the caller's transaction and
queues its first attempt after commit. ``attempt`` signs and POSTs it (``webhook-id`` is the
message id, the same on every retry); a 2xx delivers it, a 410 disables the endpoint, any
other answer or none schedules the next attempt on an exponential schedule that spans about
three days. A beat task (``dispatch_due``) picks up due retries, so no task sleeps on a
long countdown in the broker. Every attempt is logged; the admin can replay a message.
"""

from __future__ import annotations

import functools
import json
import os
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from partners import secretbox
from partners.models import (
    MessageStatus,
    WebhookEndpoint,
    WebhookMessage,
)
from partners.urlsafety import UnsafeUrlError, check_partner_url
from partners.webhooks import new_secret, signed_headers

# Delay before attempt n+1 (after attempt n failed): 5 s ... 24 h, about 3 days in all.
RETRY_SCHEDULE = [
    timedelta(seconds=5),
    timedelta(minutes=5),
    timedelta(minutes=30),
    timedelta(hours=2),
    timedelta(hours=5),
    timedelta(hours=10),
    timedelta(hours=14),
    timedelta(hours=20),
    timedelta(hours=24),
]
TIMEOUT_SECONDS = 10.0
ROTATION_OVERLAP = timedelta(hours=24)

_http_lock = threading.Lock()
_http: tuple[int, httpx.Client] | None = None


def _http_client() -> httpx.Client:
    """One pooled client per process, shared by its threads: keep-alive connections and a
    TLS context built once (building one per POST costs more than the POST itself). Made
    lazily and again after a fork, so prefork Celery workers never share sockets."""
    global _http
    current = _http
    if current is None or current[0] != os.getpid():
        with _http_lock:
            current = _http
            if current is None or current[0] != os.getpid():
                client = httpx.Client(
                    timeout=TIMEOUT_SECONDS,
                    follow_redirects=False,
                    limits=httpx.Limits(max_connections=200, max_keepalive_connections=50),
                )
                current = _http = (os.getpid(), client)
    return current[1]


def enqueue(
    *,
    partner_id: uuid.UUID,
    event_type: str,
    data: dict[str, Any],
    dedupe_key: str,
    is_sandbox: bool = False,
) -> list[WebhookMessage]:
    """Store the event for each of the partner's active endpoints that subscribe to it and
    attempt delivery after commit. Enqueuing the same dedupe_key again is a no-op.
    ``is_sandbox`` marks events about sandbox traffic (only sandbox keys list those)."""
    endpoints = WebhookEndpoint.objects.filter(partner_id=partner_id, is_active=True)
    made = []
    now = timezone.now()
    for endpoint in endpoints:
        if endpoint.event_types and event_type not in endpoint.event_types:
            continue
        message_id = f"msg_{uuid.uuid4().hex}"
        payload = {"type": event_type, "timestamp": now.isoformat(), "data": data}
        try:
            with transaction.atomic():
                message = WebhookMessage.objects.create(
                    id=message_id,
                    partner_id=partner_id,
                    endpoint=endpoint,
                    event_type=event_type,
                    dedupe_key=dedupe_key,
                    payload=payload,
                    is_sandbox=is_sandbox,
                    next_attempt_at=now,
                )
        except IntegrityError:
            continue  # already queued for this endpoint
        made.append(message)
    if made:
        from partners.tasks import deliver_webhook

        ids = [m.id for m in made]
        transaction.on_commit(lambda: [deliver_webhook.delay(i) for i in ids])
    return made


def signing_secrets(endpoint: WebhookEndpoint, at: datetime) -> list[str]:
    secrets = [secretbox.unseal(endpoint.secret_encrypted)]
    if (
        endpoint.previous_secret_encrypted
        and endpoint.previous_secret_expires_at
        and endpoint.previous_secret_expires_at > at
    ):
        secrets.append(secretbox.unseal(endpoint.previous_secret_encrypted))
    return secrets


@contextmanager
def _relaxed_commit() -> Iterator[None]:
    """A transaction whose COMMIT does not wait for the WAL flush on PostgreSQL, for the
    claim and the outcome of an attempt (the flush is most of a delivery's cost).

    Why that is safe: the message itself was stored by the enqueuer's ordinary, durable
    commit. If the database crashes, at most the last fraction of a second of claims and
    outcomes is lost, so a message may be attempted once more with the same webhook-id:
    Standard Webhooks delivery is at-least-once and receivers drop duplicates by that id.
    Nothing is ever lost, and the setting never leaks into a caller's transaction."""
    outermost = not connection.in_atomic_block
    with transaction.atomic():
        if outermost and connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SET LOCAL synchronous_commit TO OFF")
        yield


# The delivery loop's four statements (read, claim, log, delivered) are plain SQL: through
# the ORM, compiling each costs about ten times running it, and this loop bounds delivery
# throughput (bench/bench_webhooks.py). Portable SQL for PostgreSQL and SQLite; the rarer
# paths (410, giving up, replay) use the ORM.
_READ = """
SELECT m.attempts, m.payload, e.id, e.url, e.secret_encrypted,
       CASE WHEN e.previous_secret_expires_at > %s THEN e.previous_secret_encrypted END
FROM partners_webhookmessage m JOIN partners_webhookendpoint e ON e.id = m.endpoint_id
WHERE m.id = %s AND m.status = 'pending'
  AND (m.next_attempt_at IS NULL OR m.next_attempt_at <= %s)
"""
_TAKE = """
UPDATE partners_webhookmessage SET attempts = %s, next_attempt_at = %s
WHERE id = %s AND status = 'pending' AND attempts = %s
  AND (next_attempt_at IS NULL OR next_attempt_at <= %s)
"""
_LOG = """
INSERT INTO partners_webhookattempt (message_id, attempted_at, http_status, latency_ms, error)
VALUES (%s, %s, %s, %s, %s)
"""
_DELIVERED = """
UPDATE partners_webhookmessage SET status = 'delivered', delivered_at = %s,
       next_attempt_at = NULL
WHERE id = %s
"""


@dataclass(frozen=True)
class _Claimed:
    message_id: str
    attempts: int  # including this one
    body: bytes
    endpoint_id: int
    url: str
    secrets: list[str]


def _claim(message_id: str) -> _Claimed | None:
    """Take the message for one attempt, or None if it is not due (or not pending)."""
    now = timezone.now()
    at = connection.ops.adapt_datetimefield_value(now)
    with connection.cursor() as cursor:
        cursor.execute(_READ, [at, message_id, at])
        row = cursor.fetchone()
    if row is None:
        return None
    seen, payload, endpoint_id, url, secret, previous_secret = row
    attempts = seen + 1
    # Reserve the next slot now: a crash mid-attempt is retried, not lost. Compare-and-set
    # on the attempts we read: of two workers that read the same row, one wins, one skips.
    reserve = connection.ops.adapt_datetimefield_value(now + _delay_after(attempts))
    with _relaxed_commit(), connection.cursor() as cursor:
        cursor.execute(_TAKE, [attempts, reserve, message_id, seen, at])
        if cursor.rowcount != 1:
            return None
    if not isinstance(payload, str):  # a driver that decodes JSON itself
        payload = json.dumps(payload)
    return _Claimed(
        message_id=message_id,
        attempts=attempts,
        body=json.dumps(json.loads(payload), separators=(",", ":")).encode(),
        endpoint_id=endpoint_id,
        url=url,
        secrets=[_unseal(bytes(s)) for s in (secret, previous_secret) if s is not None],
    )


@functools.lru_cache(maxsize=1024)
def _unseal(token: bytes) -> str:
    # Decrypting (HMAC check + AES) per message is a tenth of a delivery's CPU; a rotation
    # stores a new token, so a cached one is never stale.
    return secretbox.unseal(token)


def _delay_after(attempts: int) -> timedelta:
    return RETRY_SCHEDULE[min(attempts - 1, len(RETRY_SCHEDULE) - 1)]


def attempt(message_id: str) -> str:
    """One delivery attempt; returns the message's status afterwards."""
    claimed = _claim(message_id)
    if claimed is None:
        return "skipped"
    started = time.monotonic()
    now = timezone.now()
    status_code: int | None = None
    error = ""
    try:
        check_partner_url(claimed.url)
        headers = signed_headers(claimed.secrets, claimed.body, message_id, now)
        response = _http_client().post(claimed.url, content=claimed.body, headers=headers)
        status_code = response.status_code
        if not 200 <= status_code < 300:
            error = f"http {status_code}"
    except UnsafeUrlError as exc:
        error = str(exc)
    except httpx.TimeoutException:
        error = "timed out"
    except httpx.HTTPError as exc:
        error = type(exc).__name__
    latency_ms = int((time.monotonic() - started) * 1000)
    # The attempt's log line and its outcome commit together (one commit, not two).
    with _relaxed_commit():
        with connection.cursor() as cursor:
            attempted_at = connection.ops.adapt_datetimefield_value(now)
            cursor.execute(_LOG, [message_id, attempted_at, status_code, latency_ms, error[:200]])
        return _settle(claimed, status_code, error)


def _settle(claimed: _Claimed, status_code: int | None, error: str) -> str:
    if not error:
        with connection.cursor() as cursor:
            delivered_at = connection.ops.adapt_datetimefield_value(timezone.now())
            cursor.execute(_DELIVERED, [delivered_at, claimed.message_id])
        return MessageStatus.DELIVERED
    if status_code == 410:
        # The partner says the endpoint is gone for good: stop sending anything to it.
        WebhookEndpoint.objects.filter(pk=claimed.endpoint_id).update(
            is_active=False, disabled_reason="answered 410 Gone"
        )
        WebhookMessage.objects.filter(
            endpoint_id=claimed.endpoint_id, status=MessageStatus.PENDING
        ).update(status=MessageStatus.FAILED, next_attempt_at=None)
        return MessageStatus.FAILED
    if claimed.attempts > len(RETRY_SCHEDULE):
        WebhookMessage.objects.filter(pk=claimed.message_id).update(
            status=MessageStatus.FAILED, next_attempt_at=None
        )
        return MessageStatus.FAILED
    return MessageStatus.PENDING


def due_message_ids(limit: int = 500) -> list[str]:
    return list(
        WebhookMessage.objects.filter(
            status=MessageStatus.PENDING, next_attempt_at__lte=timezone.now()
        )
        .order_by("next_attempt_at")
        .values_list("id", flat=True)[:limit]
    )


def replay(*, message_id: str) -> None:
    """Send a message again from the start (admin action), e.g. after a partner outage."""
    WebhookMessage.objects.filter(pk=message_id).update(
        status=MessageStatus.PENDING,
        attempts=0,
        next_attempt_at=timezone.now(),
        delivered_at=None,
    )
    from partners.tasks import deliver_webhook

    transaction.on_commit(lambda: deliver_webhook.delay(message_id))


def rotate_secret(*, endpoint_id: int) -> str:
    """A new signing secret (returned once); the old one keeps signing for a day."""
    with transaction.atomic():
        endpoint = WebhookEndpoint.objects.select_for_update().get(pk=endpoint_id)
        secret = new_secret()
        endpoint.previous_secret_encrypted = endpoint.secret_encrypted
        endpoint.previous_secret_expires_at = timezone.now() + ROTATION_OVERLAP
        endpoint.secret_encrypted = secretbox.seal(secret)
        endpoint.save()
    return secret
