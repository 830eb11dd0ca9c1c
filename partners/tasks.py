"""Celery tasks for outbound webhooks: thin, re-fetch by id, safe to run twice."""

from __future__ import annotations

from celery import shared_task

from partners import webhook_delivery


@shared_task(acks_late=True)
def deliver_webhooks(message_ids: list[str]) -> dict[str, str]:
    """One delivery attempt for each of a batch of messages (ids only)."""
    return webhook_delivery.attempt_many(message_ids)


@shared_task
def dispatch_due_webhooks() -> int:
    """Beat: queue every message whose next attempt is due, in batches."""
    ids = webhook_delivery.due_message_ids()
    webhook_delivery.queue_deliveries(ids)
    return len(ids)
