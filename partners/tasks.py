"""Celery tasks for outbound webhooks: thin, re-fetch by id, safe to run twice."""

from __future__ import annotations

from celery import shared_task

from partners import outbound


@shared_task(acks_late=True)
def deliver_webhook(message_id: str) -> str:
    return outbound.attempt(message_id)


@shared_task
def dispatch_due_webhooks() -> int:
    """Beat: queue every message whose next attempt is due."""
    ids = outbound.due_message_ids()
    for message_id in ids:
        deliver_webhook.delay(message_id)
    return len(ids)
