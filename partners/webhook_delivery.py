"""Outbound webhooks to partners, per the Standard Webhooks specification.

``enqueue`` stores one message per subscribed endpoint inside the caller's transaction and
queues its first attempt after commit. ``attempt`` signs and POSTs it (``webhook-id`` is the
message id, the same on every retry); a 2xx delivers it, a 410 disables the endpoint, any
other answer or none schedules the next attempt on an exponential schedule that spans about
three days. A beat task (``dispatch_due_webhooks``) picks up due retries, so no task sleeps
on a long countdown in the broker. Every attempt is logged; the admin can replay a message.

Delivery is batched (``attempt_many``): a batch of up to BATCH_SIZE messages is claimed with
one statement, POSTed concurrently, and logged and settled with a few more, so the database
costs a fraction of a round trip per message; ``attempt`` is a batch of one.
"""

from __future__ import annotations

import json
import sqlite3
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from celery import current_app
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from partners import http, secretbox
from partners.models import (
    MessageStatus,
    WebhookEndpoint,
    WebhookMessage,
)
from partners.webhook_signing import new_secret, signed_headers

# Delay before attempt n+1 (after attempt n failed): the one retry policy's webhook schedule.
RETRY_SCHEDULE = list(http.WEBHOOK_RETRIES.schedule)
TIMEOUT_SECONDS = 10.0
ROTATION_OVERLAP = timedelta(hours=24)
# The task that attempts a batch of messages (partners.tasks), queued by name: see
# queue_deliveries.
DELIVER_TASK = "partners.tasks.deliver_webhooks"


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
        _queue_at_commit([m.id for m in made])
    return made


class _QueueAtCommit:
    """An on-commit callback queuing the ids gathered by every enqueue of one transaction."""

    def __init__(self) -> None:
        self.ids: list[str] = []

    def __call__(self) -> None:
        queue_deliveries(list(dict.fromkeys(self.ids)))


def _queue_at_commit(ids: list[str]) -> None:
    """Queue the first attempt of ids after commit, batched with the other messages enqueued
    in the same transaction. An id added under a savepoint that rolls back stays in the
    batch: the task skips an id with no pending message, so that costs only a lookup. A
    transaction that rolls back drops its callback and with it the whole batch."""
    if connection.in_atomic_block:
        for entry in connection.run_on_commit:  # (savepoint ids, callback, robust)
            callback = entry[1]
            if isinstance(callback, _QueueAtCommit):
                callback.ids.extend(ids)
                return
    batch = _QueueAtCommit()
    batch.ids.extend(ids)
    transaction.on_commit(batch)


def queue_deliveries(message_ids: list[str]) -> int:
    """Queue delivery tasks for message_ids in batches of BATCH_SIZE (task args are ids only);
    returns the number of tasks queued."""
    # The messages are rows (an outbox) written in the caller's transaction, so queuing is
    # only a wake-up call and the beat task catches anything it misses. The task calls
    # back into this module, so it is looked up by name in Celery's registry rather than
    # imported (partners.tasks imports webhook_delivery, not the other way round); moving the
    # queuing out to every caller of enqueue (delivery, consent deletion, billing) would
    # scatter it. The registered task, not send_task: it honours eager mode and fails
    # loudly if partners.tasks was never loaded (PartnersConfig.ready loads it).
    deliver_webhooks = current_app.tasks[DELIVER_TASK]
    batches = [message_ids[i : i + BATCH_SIZE] for i in range(0, len(message_ids), BATCH_SIZE)]
    for batch in batches:
        deliver_webhooks.delay(batch)
    return len(batches)


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


# The delivery loop's statements are plain SQL: through the ORM, compiling each costs about
# ten times running it, and this loop bounds delivery throughput (bench/bench_webhooks.py).
# Portable SQL for PostgreSQL and SQLite (RETURNING needs SQLite >= 3.35; older SQLite
# claims row by row). The rarer paths (410, giving up, replay) use the ORM.
#
# A batch costs a fixed handful of round trips whatever its size: one compare-and-set UPDATE
# claims every due message of the batch (reserving each one's next retry slot, so a crash
# after the POST re-sends, never loses), one SELECT reads their endpoints, then one INSERT
# logs every attempt and one UPDATE per outcome settles them, in one commit.
_CLAIM = """
UPDATE partners_webhookmessage
SET attempts = attempts + 1,
    next_attempt_at = CASE attempts {cases} ELSE %s END
WHERE id IN ({ids}) AND status = 'pending'
  AND (next_attempt_at IS NULL OR next_attempt_at <= %s)
RETURNING id, attempts, payload, endpoint_id
"""
_ENDPOINTS = """
SELECT id, url, secret_encrypted,
       CASE WHEN previous_secret_expires_at > %s THEN previous_secret_encrypted END
FROM partners_webhookendpoint WHERE id IN ({ids})
"""
# Fallback for SQLite < 3.35 (no RETURNING): read, then compare-and-set on the attempts read.
_READ = """
SELECT m.attempts, m.payload, m.endpoint_id
FROM partners_webhookmessage m
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
VALUES {rows}
"""
_DELIVERED = """
UPDATE partners_webhookmessage SET status = 'delivered', delivered_at = %s,
       next_attempt_at = NULL
WHERE id IN ({ids})
"""

# POSTs in flight at once within one batch (the batch's DB work is done by the calling
# thread; these threads only sign and POST).
POST_CONCURRENCY = 2
BATCH_SIZE = 50


@dataclass(frozen=True)
class _Claimed:
    message_id: str
    attempts: int  # including this one
    body: bytes
    endpoint_id: int
    url: str
    secrets: list[str]


@dataclass(frozen=True)
class _Outcome:
    claimed: _Claimed
    attempted_at: datetime
    status_code: int | None
    latency_ms: int
    error: str
    retryable: bool


def _placeholders(n: int) -> str:
    return ", ".join(["%s"] * n)


def _can_return() -> bool:
    return connection.vendor != "sqlite" or sqlite3.sqlite_version_info >= (3, 35)


def _claim_rows(message_ids: list[str], now: datetime) -> list[tuple[str, int, Any, int]]:
    """(id, attempts including this one, payload, endpoint id) of the messages taken."""
    adapt = connection.ops.adapt_datetimefield_value
    at = adapt(now)
    if _can_return():
        # One compare-and-set for the whole batch. On PostgreSQL a concurrent claimer of the
        # same row waits for the row lock and then re-checks the WHERE against the committed
        # row, whose next_attempt_at is now in the future: each message is taken once.
        cases, params = [], []
        for seen in range(len(RETRY_SCHEDULE)):
            cases.append("WHEN %s THEN %s")
            params += [seen, adapt(now + _delay_after(seen + 1))]
        params.append(adapt(now + RETRY_SCHEDULE[-1]))
        sql = _CLAIM.format(cases=" ".join(cases), ids=_placeholders(len(message_ids)))
        with _relaxed_commit(), connection.cursor() as cursor:
            cursor.execute(sql, [*params, *message_ids, at])
            return [tuple(row) for row in cursor.fetchall()]
    rows = []
    for message_id in message_ids:
        with connection.cursor() as cursor:
            cursor.execute(_READ, [message_id, at])
            row = cursor.fetchone()
        if row is None:
            continue
        seen, payload, endpoint_id = row
        reserve = adapt(now + _delay_after(seen + 1))
        with _relaxed_commit(), connection.cursor() as cursor:
            cursor.execute(_TAKE, [seen + 1, reserve, message_id, seen, at])
            if cursor.rowcount == 1:
                rows.append((message_id, seen + 1, payload, endpoint_id))
    return rows


def _claim_many(message_ids: list[str]) -> list[_Claimed]:
    """Take the due, pending messages among message_ids for one attempt each."""
    now = timezone.now()
    rows = _claim_rows(message_ids, now)
    if not rows:
        return []
    endpoint_ids = sorted({row[3] for row in rows})
    with connection.cursor() as cursor:
        cursor.execute(
            _ENDPOINTS.format(ids=_placeholders(len(endpoint_ids))),
            [connection.ops.adapt_datetimefield_value(now), *endpoint_ids],
        )
        endpoints = {
            endpoint_id: (
                url,
                [secretbox.unseal(s) for s in (secret, previous) if s is not None],
            )
            for endpoint_id, url, secret, previous in cursor.fetchall()
        }
    order = {message_id: i for i, message_id in enumerate(message_ids)}
    claimed = []
    for message_id, attempts, payload, endpoint_id in sorted(rows, key=lambda r: order[r[0]]):
        if not isinstance(payload, str):  # a driver that decodes JSON itself
            payload = json.dumps(payload)
        url, secrets = endpoints[endpoint_id]
        claimed.append(
            _Claimed(
                message_id=message_id,
                attempts=attempts,
                body=json.dumps(json.loads(payload), separators=(",", ":")).encode(),
                endpoint_id=endpoint_id,
                url=url,
                secrets=secrets,
            )
        )
    return claimed


def _delay_after(attempts: int) -> timedelta:
    return http.WEBHOOK_RETRIES.delay_after(attempts)


def _post(claimed: _Claimed) -> _Outcome:
    """Sign and POST one claimed message (no database access: runs in any thread). Never
    raises: whatever one endpoint does is this message's outcome, not the batch's."""
    now = timezone.now()
    headers = signed_headers(claimed.secrets, claimed.body, claimed.message_id, now)
    sent = http.post(claimed.url, body=claimed.body, headers=headers, timeout=TIMEOUT_SECONDS)
    return _Outcome(
        claimed,
        now,
        sent.status,
        sent.latency_ms,
        sent.reason,
        http.WEBHOOK_RETRIES.retryable(sent),
    )


def attempt(message_id: str) -> str:
    """One delivery attempt; returns the message's status afterwards (or "skipped")."""
    return attempt_many([message_id])[message_id]


def attempt_many(message_ids: list[str], *, concurrency: int | None = None) -> dict[str, str]:
    """One delivery attempt for each due, pending message among message_ids, POSTed up to
    ``concurrency`` (default POST_CONCURRENCY) at a time; returns each id's status afterwards
    ("skipped" if it was not due, not pending, or taken by another worker). At-least-once:
    each message's next attempt is reserved when it is claimed, so a crash between POST and
    settle re-sends it later with the same webhook-id, never loses it."""
    ids = list(dict.fromkeys(message_ids))
    result = dict.fromkeys(ids, "skipped")
    for start in range(0, len(ids), BATCH_SIZE):
        claimed = _claim_many(ids[start : start + BATCH_SIZE])
        if not claimed:
            continue
        workers = max(1, min(concurrency or POST_CONCURRENCY, len(claimed)))
        if workers == 1:
            outcomes = [_post(c) for c in claimed]
        else:
            with ThreadPoolExecutor(max_workers=workers) as pool:
                outcomes = list(pool.map(_post, claimed))
        result.update(_settle_many(outcomes))
    return result


def _settle_many(outcomes: list[_Outcome]) -> dict[str, str]:
    """Log every attempt and settle every outcome in one commit."""
    adapt = connection.ops.adapt_datetimefield_value
    status: dict[str, str] = {}
    delivered, gave_up, gone = [], [], set()
    for o in outcomes:
        message_id = o.claimed.message_id
        if not o.error:
            delivered.append(message_id)
            status[message_id] = MessageStatus.DELIVERED
        elif o.status_code == 410:
            # The partner says the endpoint is gone for good: stop sending anything to it.
            gone.add(o.claimed.endpoint_id)
            status[message_id] = MessageStatus.FAILED
        elif not o.retryable or o.claimed.attempts > len(RETRY_SCHEDULE):
            # A URL that cannot work until someone fixes it fails at once (the admin can
            # replay it once fixed); anything else after about three days of retries.
            gave_up.append(message_id)
            status[message_id] = MessageStatus.FAILED
        else:
            status[message_id] = MessageStatus.PENDING  # next attempt reserved at claim
    log_params: list[Any] = []
    for o in outcomes:
        log_params += [o.claimed.message_id, adapt(o.attempted_at), o.status_code]
        log_params += [o.latency_ms, o.error]
    with _relaxed_commit():
        with connection.cursor() as cursor:
            rows = ", ".join(["(%s, %s, %s, %s, %s)"] * len(outcomes))
            cursor.execute(_LOG.format(rows=rows), log_params)
            if delivered:
                cursor.execute(
                    _DELIVERED.format(ids=_placeholders(len(delivered))),
                    [adapt(timezone.now()), *delivered],
                )
        if gave_up:
            WebhookMessage.objects.filter(pk__in=gave_up).update(
                status=MessageStatus.FAILED, next_attempt_at=None
            )
        if gone:
            WebhookEndpoint.objects.filter(pk__in=gone).update(
                is_active=False, disabled_reason="answered 410 Gone"
            )
            WebhookMessage.objects.filter(
                endpoint_id__in=gone, status=MessageStatus.PENDING
            ).update(status=MessageStatus.FAILED, next_attempt_at=None)
            # A message of a gone endpoint that failed otherwise in this batch is failed too.
            for o in outcomes:
                if o.claimed.endpoint_id in gone and status[o.claimed.message_id] == "pending":
                    status[o.claimed.message_id] = MessageStatus.FAILED
    return status


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
    transaction.on_commit(lambda: queue_deliveries([message_id]))


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
