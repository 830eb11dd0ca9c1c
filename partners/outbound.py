"""Outbound webhooks to partners, per the Standard Webhooks specification.

``enqueue`` stores one message per subscribed endpoint inside the caller's transaction and
queues its first attempt after commit. ``attempt`` signs and POSTs it (``webhook-id`` is the
message id, the same on every retry); a 2xx delivers it, a 410 disables the endpoint, any
other answer or none schedules the next attempt on an exponential schedule that spans about
three days. A beat task (``dispatch_due``) picks up due retries, so no task sleeps on a
long countdown in the broker. Every attempt is logged; the admin can replay a message.
"""

from __future__ import annotations

import json
import time
import uuid
from datetime import datetime, timedelta
from typing import Any

import httpx
from django.db import IntegrityError, transaction
from django.utils import timezone

from partners import secretbox
from partners.models import (
    MessageStatus,
    WebhookAttempt,
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


def enqueue(
    *, partner_id: uuid.UUID, event_type: str, data: dict[str, Any], dedupe_key: str
) -> list[WebhookMessage]:
    """Store the event for each of the partner's active endpoints that subscribe to it and
    attempt delivery after commit. Enqueuing the same dedupe_key again is a no-op."""
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


def _claim(message_id: str) -> WebhookMessage | None:
    """Take the message for one attempt, or None if it is not due (or not pending)."""
    with transaction.atomic():
        message = (
            WebhookMessage.objects.select_for_update(skip_locked=True, of=("self",))
            .select_related("endpoint")
            .filter(pk=message_id, status=MessageStatus.PENDING)
            .first()
        )
        if message is None:
            return None
        if message.next_attempt_at and message.next_attempt_at > timezone.now():
            return None
        message.attempts += 1
        # Reserve the next slot now: a crash mid-attempt is retried, not lost.
        message.next_attempt_at = timezone.now() + _delay_after(message.attempts)
        message.save(update_fields=["attempts", "next_attempt_at"])
        return message


def _delay_after(attempts: int) -> timedelta:
    return RETRY_SCHEDULE[min(attempts - 1, len(RETRY_SCHEDULE) - 1)]


def attempt(message_id: str) -> str:
    """One delivery attempt; returns the message's status afterwards."""
    message = _claim(message_id)
    if message is None:
        return "skipped"
    endpoint = message.endpoint
    started = time.monotonic()
    now = timezone.now()
    status_code: int | None = None
    error = ""
    try:
        check_partner_url(endpoint.url)
        body = json.dumps(message.payload, separators=(",", ":")).encode()
        headers = signed_headers(signing_secrets(endpoint, now), body, message.id, now)
        response = httpx.post(
            endpoint.url,
            content=body,
            headers=headers,
            timeout=TIMEOUT_SECONDS,
            follow_redirects=False,
        )
        status_code = response.status_code
        if not 200 <= status_code < 300:
            error = f"http {status_code}"
    except UnsafeUrlError as exc:
        error = str(exc)
    except httpx.TimeoutException:
        error = "timed out"
    except httpx.HTTPError as exc:
        error = type(exc).__name__
    WebhookAttempt.objects.create(
        message=message,
        attempted_at=now,
        http_status=status_code,
        latency_ms=int((time.monotonic() - started) * 1000),
        error=error[:200],
    )
    return _settle(message, endpoint, status_code, error)


def _settle(
    message: WebhookMessage, endpoint: WebhookEndpoint, status_code: int | None, error: str
) -> str:
    if not error:
        WebhookMessage.objects.filter(pk=message.pk).update(
            status=MessageStatus.DELIVERED, delivered_at=timezone.now(), next_attempt_at=None
        )
        return MessageStatus.DELIVERED
    if status_code == 410:
        # The partner says the endpoint is gone for good: stop sending anything to it.
        WebhookEndpoint.objects.filter(pk=endpoint.pk).update(
            is_active=False, disabled_reason="answered 410 Gone"
        )
        WebhookMessage.objects.filter(endpoint=endpoint, status=MessageStatus.PENDING).update(
            status=MessageStatus.FAILED, next_attempt_at=None
        )
        return MessageStatus.FAILED
    if message.attempts > len(RETRY_SCHEDULE):
        WebhookMessage.objects.filter(pk=message.pk).update(
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
