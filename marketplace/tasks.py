"""Celery tasks: thin, re-fetch by id, safe to run twice."""

from __future__ import annotations

import uuid

from celery import shared_task
from celery.app.task import Task
from django.conf import settings

from marketplace import auctions, delivery
from marketplace.models import AttemptOutcome
from partners import http


@shared_task(bind=True, acks_late=True, max_retries=None)
def deliver_lead(self: Task, lead_id: str) -> str:
    retries = self.request.retries or 0
    final = retries >= settings.DELIVERY_MAX_RETRIES
    result = delivery.deliver(lead_id=uuid.UUID(lead_id), final_attempt=final)
    if result.retryable:
        # The posts' backoff: 10 s, 20 s, 40 s, ... (ignored in eager mode).
        raise self.retry(countdown=http.POST_RETRIES.delay_after(retries + 1).total_seconds())
    if result.outcome in {AttemptOutcome.FAILURE, AttemptOutcome.ERROR}:
        # An auction winner that rejected the post or could not take it: the next bidder
        # (a no-op for leads that were not won at an auction, or were refused by consent).
        auctions.fall_back(lead_id=uuid.UUID(lead_id))
    return result.outcome


@shared_task(acks_late=True)
def post_leads(lead_ids: list[str]) -> int:
    # Auction winners: one message from the ping worker, one delivery task per lead here.
    for lead_id in lead_ids:
        deliver_lead.delay(lead_id)
    return len(lead_ids)


@shared_task(acks_late=True)
def run_auction(auction_id: str) -> str:
    # Routed to the "ping" queue: latency-sensitive, never behind slow posts.
    return auctions.run(auction_id=uuid.UUID(auction_id))
