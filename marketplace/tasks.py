"""Celery tasks: thin, re-fetch by id, safe to run twice."""

from __future__ import annotations

import uuid

from celery import shared_task
from celery.app.task import Task
from django.conf import settings

from marketplace import delivery


@shared_task(bind=True, acks_late=True, max_retries=None)
def deliver_lead(self: Task, lead_id: str) -> str:
    retries = self.request.retries or 0
    final = retries >= settings.DELIVERY_MAX_RETRIES
    result = delivery.deliver(lead_id=uuid.UUID(lead_id), final_attempt=final)
    if result.retryable:
        # Exponential backoff: 10 s, 20 s, 40 s, ... (ignored in eager mode).
        raise self.retry(countdown=10 * 2**retries)
    return result.outcome
