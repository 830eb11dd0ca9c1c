"""The stuck-work sweeper: posts and auctions that no message will run any more, queued
again through the outbox, soon after they stall (the outbox's own sweeper re-drives a
referral only once it is overdue, ``dispatch.SETTLE_WITHIN``).

A message can be lost (a broker outage between commit and publish, a worker killed before
it started) and a claim can outlive its worker (killed mid-post). The domain finds them
(``delivery.stale_claims``: a claim past its lease, a matched lead never claimed;
``auctions.stale_pending``); :func:`sweep_stuck_work`, run by beat every ``SWEEP_EVERY``,
writes their messages, and prunes the catalogue's change log. Queuing work that is in
fact still queued is harmless: a post runs only under a claim, and an auction is awarded
once.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from datetime import timedelta

from celery import shared_task
from django.db import transaction
from django.utils import timezone

from marketplace import auctions, delivery, outbox, tasks
from marketplace.models import Auction, Lead
from partners.models import CatalogueChange

SWEEP_EVERY = timedelta(seconds=30)
# Far longer than a product index goes without looking (``ProductIndex.STALE_AFTER``).
CATALOGUE_CHANGES_KEPT = timedelta(hours=6)


@shared_task(acks_late=True)
def sweep_stuck_work() -> dict[str, int]:
    """Queue the posts of stale leads and the dispatch of stale auctions' referrals (which
    runs the auction and posts its winners); ids only."""
    lead_ids = delivery.stale_claims()
    auction_ids = auctions.stale_pending()
    by_referral: defaultdict[uuid.UUID, list[list[str]]] = defaultdict(list)
    for lead_id, referral_id in Lead.objects.filter(pk__in=lead_ids).values_list(
        "id", "referral_id"
    ):
        by_referral[referral_id].append([str(lead_id)])
    referrals = Auction.objects.filter(pk__in=auction_ids).values_list("referral_id", flat=True)
    with transaction.atomic():
        for referral_id, args in by_referral.items():
            outbox.enqueue_many(tasks.deliver_lead, args, referral_id=referral_id)
        for referral_id in referrals:
            outbox.enqueue(tasks.dispatch_referral, str(referral_id), referral_id=referral_id)
    pruned, _ = CatalogueChange.objects.filter(
        changed_at__lt=timezone.now() - CATALOGUE_CHANGES_KEPT
    ).delete()
    return {"leads": len(lead_ids), "auctions": len(auction_ids), "catalogue_changes": pruned}
