"""Celery tasks: thin, re-fetch by id, safe to run twice.

The edge of the domain: the functions they call (``delivery``, ``auctions``, ``routing``)
decide and return what must happen next; only this module puts work on a queue, and only
after commit. No business rule lives here.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from celery import shared_task
from celery.app.task import Task
from django.conf import settings
from django.db import transaction

from marketplace import auctions, delivery
from marketplace.models import Lead
from marketplace.routing import Routed
from partners import http


@shared_task(bind=True, acks_late=True, max_retries=None)
def deliver_lead(self: Task, lead_id: str) -> str:
    retries = self.request.retries or 0
    final = retries >= settings.DELIVERY_MAX_RETRIES
    posted = delivery.post_lead(lead_id=uuid.UUID(lead_id), final_attempt=final)
    if posted.result.retryable:
        # The posts' backoff: 10 s, 20 s, 40 s, ... (ignored in eager mode).
        raise self.retry(countdown=http.POST_RETRIES.delay_after(retries + 1).total_seconds())
    post_after_commit(posted.fallback)
    return posted.result.outcome


@shared_task(acks_late=True)
def post_leads(lead_ids: list[str]) -> int:
    # Auction winners: one message from the ping worker, one delivery task per lead here.
    for lead_id in lead_ids:
        deliver_lead.delay(lead_id)
    return len(lead_ids)


@shared_task(acks_late=True)
def run_auction(auction_id: str) -> str:
    # Routed to the "ping" queue: latency-sensitive, never behind slow posts.
    ran = auctions.run(auction_id=uuid.UUID(auction_id))
    post_after_commit(ran.winners)
    return ran.status


def post_after_commit(leads: Sequence[Lead]) -> None:
    """Queue the posts of an auction's (new) winners once their leads are committed."""
    if not leads:
        return
    ids = [str(lead.id) for lead in leads]
    # One message for all the winners: publishing costs the ping worker ~1 ms of CPU per
    # message; the post worker queues each lead's own (retried) delivery task.
    transaction.on_commit(lambda: post_leads.delay(ids))


def queue_routed(routed: Routed) -> None:
    """Queue what routing made, after the intake's commit: the direct posts, then the
    auction (ids only: no personal data in task arguments)."""
    push = [str(lead.id) for lead in routed.to_post]
    if push:
        transaction.on_commit(lambda: [deliver_lead.delay(lead_id) for lead_id in push])
    if routed.auction is not None:
        auction_id = str(routed.auction.id)
        transaction.on_commit(lambda: run_auction.delay(auction_id))
