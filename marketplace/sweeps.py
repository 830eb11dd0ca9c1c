"""The sweeper: distribution work that no queued message waits on any more, queued again.

A message can be lost (a broker outage between commit and publish, a worker killed before
it started) and a claim can outlive its worker (killed mid-post). The domain finds them
(``delivery.stale_claims``, ``auctions.stale_pending``); :func:`sweep_stuck_work`, run by
beat every ``SWEEP_EVERY``, queues them again. Queuing work that is in fact still queued is
harmless: a post runs only under a claim, and an auction is awarded once.
"""

from __future__ import annotations

from datetime import timedelta

from celery import shared_task

from marketplace import auctions, delivery, tasks

SWEEP_EVERY = timedelta(seconds=30)


@shared_task(acks_late=True)
def sweep_stuck_work() -> dict[str, int]:
    """Queue the posts of stale leads and the runs of stale auctions; ids only."""
    leads = delivery.stale_claims()
    pending = auctions.stale_pending()
    for lead_id in leads:
        tasks.deliver_lead.delay(str(lead_id))
    for auction_id in pending:
        tasks.run_auction.delay(str(auction_id))
    return {"leads": len(leads), "auctions": len(pending)}
