"""Celery tasks: thin, re-fetch by id, safe to run twice.

The edge of the domain: the functions they call (``dispatch``, ``delivery``, ``auctions``)
decide and return what must happen next; only this module puts work on a queue, and only
through the outbox (``marketplace.outbox``): a message row written in a transaction,
published after its commit, re-published by the sweeper until its task is done. No business
rule lives here.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from celery import shared_task
from celery.app.task import Task
from django.conf import settings
from django.db import transaction

from marketplace import auctions, delivery, dispatch, learning, outbox
from marketplace.experiments import review
from marketplace.models import Lead
from marketplace.outbox import OutboxTask
from partners import http


@shared_task(base=OutboxTask, bind=True)
def dispatch_referral(self: Task, referral_id: str) -> str:
    """A routed referral's one message (written by intake): post its leads, run its auction,
    post the winners. On the ``ping`` queue: the auction is latency-sensitive."""
    referral = uuid.UUID(referral_id)
    _post(dispatch.leads_to_post(referral, task_name=deliver_lead.name), referral)
    auction_id = dispatch.pending_auction_id(referral)
    status = "dispatched"
    if auction_id is not None:
        ran = auctions.run(auction_id=auction_id)
        status = ran.status
        # The winners' leads committed in the award; their posts are written just after. A
        # worker killed in between leaves them matched: this message is not done, so it
        # runs again and leads_to_post finds them.
        _post([lead.id for lead in ran.winners], referral)
    outbox.finish_now(self)
    return dispatch.settle(referral) or status


@shared_task(base=OutboxTask, bind=True)
def deliver_lead(self: Task, lead_id: str) -> str:
    retries = self.request.retries or 0
    final = retries >= settings.DELIVERY_MAX_RETRIES
    posted = delivery.post_lead(lead_id=uuid.UUID(lead_id), final_attempt=final)
    skipped = posted.result.outcome == "skipped" and not self.request.is_eager
    wait = dispatch.claim_wait(uuid.UUID(lead_id)) if skipped else None
    if wait is not None:
        # Claimed by a run that may have died (in a worker; in-process nothing can die):
        # try again once its lease has run out, when delivery takes the claim over.
        countdown = outbox.safe_countdown(wait + 1)
        outbox.postpone(self.request.id, countdown)
        raise self.retry(countdown=countdown)
    if posted.result.retryable:
        # The posts' backoff: 10 s, 20 s, 40 s, ... (ignored in eager mode), always within
        # the broker's visibility timeout; the sweeper waits for the retry.
        countdown = outbox.safe_countdown(
            http.POST_RETRIES.delay_after(retries + 1).total_seconds()
        )
        outbox.postpone(self.request.id, countdown)
        raise self.retry(countdown=countdown)
    referral_id = Lead.objects.filter(pk=lead_id).values_list("referral_id", flat=True).first()
    if referral_id is not None:
        post_after_commit(posted.fallback, referral_id=referral_id)
    outbox.finish_now(self)
    if referral_id is not None:
        dispatch.settle(referral_id)
    return posted.result.outcome


@shared_task(base=OutboxTask, bind=True)
def post_leads(self: Task, lead_ids: list[str]) -> int:
    """Posts for leads (messages queued before dispatch_referral existed): one delivery
    task per lead, through the outbox."""
    leads = Lead.objects.filter(pk__in=lead_ids).values_list("id", "referral_id")
    for lead_id, referral_id in leads:
        _post([lead_id], referral_id)
    return len(lead_ids)


@shared_task(base=OutboxTask, bind=True)
def run_auction(self: Task, auction_id: str) -> str:
    """An auction queued on its own (before dispatch_referral existed)."""
    ran = auctions.run(auction_id=uuid.UUID(auction_id))
    if ran.winners:
        _post([lead.id for lead in ran.winners], ran.winners[0].referral_id)
    return ran.status


@shared_task
def sweep_outbox() -> dict[str, int]:
    """Beat: publish again what is not done by its deadline; settle referrals with nothing
    left to happen that no task settled; dispatch again overdue referrals that nothing is
    working on. (Not an OutboxTask: beat runs it again in a few seconds, so a failed run
    needs no retry of its own.)"""
    published = outbox.sweep()
    settled = dispatch.settle_ready()
    redriven = dispatch.to_redrive()
    with transaction.atomic():
        for referral_id in redriven:
            outbox.enqueue(dispatch_referral, str(referral_id), referral_id=referral_id)
    return {"published": published, "settled": settled, "redriven": len(redriven)}


@shared_task
def review_experiments() -> dict[str, int]:
    """Beat, every 15 minutes: the stop rule over every running experiment (its intervals
    are valid at every look, so a frequent check costs no false stops); those it says to
    stop are stopped with its reason and the time. Running it twice stops nothing twice."""
    reviews = review.review_running()
    return {
        "running": len(reviews),
        "stopped": sum(r.stopped for r in reviews),
    }


@shared_task
def refresh_conversion_counts() -> int:
    """Beat, every minute: bring routing's conversion counts up to date (rows written)."""
    return learning.refresh_counts()


def _post(lead_ids: Sequence[uuid.UUID], referral_id: uuid.UUID) -> None:
    if not lead_ids:
        return
    with transaction.atomic():
        outbox.enqueue_many(
            deliver_lead, [[str(lead_id)] for lead_id in lead_ids], referral_id=referral_id
        )


def post_after_commit(leads: Sequence[Lead], *, referral_id: uuid.UUID) -> None:
    """Queue the posts of an auction's (new) winners: outbox messages in the current (or
    their own) transaction, published after it commits."""
    _post([lead.id for lead in leads], referral_id)


def queue_referral(referral_id: uuid.UUID) -> None:
    """Intake's one message for a routed referral, in the intake's transaction."""
    outbox.enqueue(dispatch_referral, str(referral_id), referral_id=referral_id)
