"""A routed referral's distribution, from its one outbox message to a terminal status.

Intake stores the referral, its direct and pull leads and its auction, and one outbox
message: ``dispatch_referral``. The worker that runs it (``marketplace.tasks``) asks
:func:`leads_to_post` which leads still need a post and queues them, runs the auction if it
is still pending, queues its winners' posts; every post task, when it ends for good, asks
:func:`settle` whether the referral is done. Each step is idempotent, so the message may be
delivered twice, and a referral the steps left behind (a worker killed between two of them)
is found by :func:`overdue` and dispatched again by the outbox sweeper.

A referral is terminal when nothing is left to happen to it: its auction (if any) has run,
no lead waits for or is in a post, and none of its outbox messages is undone. Then it is
*distributed* (some partner holds or may pull the lead), *withdrawn* (every lead was
refused by the consent gate) or *no match* (every post was rejected or failed).
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from django.db.models import Exists, OuterRef, Q, QuerySet
from django.utils import timezone

from marketplace.models import (
    REPORTABLE_STATUSES,
    Auction,
    AuctionStatus,
    Lead,
    LeadStatus,
    OutboxMessage,
    Referral,
    ReferralStatus,
)
from partners.models import DeliveryMode

# A routed referral should be terminal this long after intake (posts with all their
# retries take about six minutes); later, it is overdue.
SETTLE_WITHIN = timedelta(minutes=15)
# The sweeper settles a referral its tasks left routed once it is this old.
SETTLE_CHECK_AFTER = timedelta(seconds=30)
# The sweeper dispatches an overdue referral again at most this often.
REDRIVE_EVERY = timedelta(minutes=2)
POSTED_MODES = (DeliveryMode.DIRECT_POST, DeliveryMode.PING_POST)
# Leads with a partner (or for it to pull).
HELD = {*REPORTABLE_STATUSES, LeadStatus.AVAILABLE}


def settle_by(now: datetime) -> datetime:
    return now + SETTLE_WITHIN


def leads_to_post(referral_id: uuid.UUID, *, task_name: str) -> list[uuid.UUID]:
    """The referral's leads that need a post and have no undone post message (``task_name``
    is the post task's): matched ones, and those whose post claim outlived its lease (its
    worker died mid-post; delivery takes such a claim over)."""
    now = timezone.now()
    leads = Lead.objects.filter(referral_id=referral_id, delivery_mode__in=POSTED_MODES).filter(
        Q(status=LeadStatus.MATCHED)
        | Q(status=LeadStatus.DELIVERING, claim_expires_at__lte=now)
        | Q(status=LeadStatus.DELIVERING, claim_expires_at__isnull=True)
    )
    ids = list(leads.values_list("id", flat=True))
    if not ids:
        return []
    queued = {
        str(args[0])
        for args in OutboxMessage.objects.filter(
            referral_id=referral_id, task=task_name, done_at__isnull=True
        ).values_list("args", flat=True)
        if args
    }
    return [lead_id for lead_id in ids if str(lead_id) not in queued]


def claim_wait(lead_id: uuid.UUID) -> float | None:
    """Seconds until another run's claim on this lead's post runs out (then delivery takes
    it over), or None when no live claim stands in the way. A redelivered post whose own
    worker died mid-post meets its dead claim here, and must not give up on the lead."""
    expires = (
        Lead.objects.filter(pk=lead_id, status=LeadStatus.DELIVERING)
        .values_list("claim_expires_at", flat=True)
        .first()
    )
    if expires is None:
        return None
    return max(0.0, (expires - timezone.now()).total_seconds())


def pending_auction_id(referral_id: uuid.UUID) -> uuid.UUID | None:
    return (
        Auction.objects.filter(referral_id=referral_id, status=AuctionStatus.PENDING)
        .values_list("id", flat=True)
        .first()
    )


def settle(referral_id: uuid.UUID) -> str | None:
    """Move a routed referral to its terminal status if nothing is left to happen to it;
    returns the status set, or None (still in progress, or terminal already). Call it after
    marking the caller's own message done. Compare-and-set: safe to run concurrently."""
    if (
        pending_auction_id(referral_id) is not None
        or Lead.objects.filter(
            referral_id=referral_id, status__in=[LeadStatus.MATCHED, LeadStatus.DELIVERING]
        ).exists()
        or OutboxMessage.objects.filter(referral_id=referral_id, done_at__isnull=True).exists()
    ):
        return None
    statuses = set(Lead.objects.filter(referral_id=referral_id).values_list("status", flat=True))
    if statuses & HELD:
        status, reason = ReferralStatus.DISTRIBUTED, ""
    elif LeadStatus.BLOCKED in statuses:
        status, reason = ReferralStatus.WITHDRAWN, "consent withdrawn before any post"
    elif statuses:
        status, reason = ReferralStatus.NO_MATCH, "every post was rejected or failed"
    else:
        status, reason = ReferralStatus.NO_MATCH, "no ping-post partner bid"
    moved = Referral.objects.filter(pk=referral_id, status=ReferralStatus.ROUTED).update(
        status=status, status_reason=reason
    )
    return status if moved else None


def settle_ready(*, now: datetime | None = None, limit: int = 500) -> int:
    """Settle routed referrals that nothing is left to happen to but that no task settled:
    their last lead changed by another path (a partner's word on a lead whose answer was
    lost), or the task that would have settled them died after marking its message done.
    Run by the outbox sweeper every few seconds, so a referral is terminal seconds after
    its last step, not at its deadline. Only referrals a little older than a post's first
    run are looked at (routed referrals are few: the index covers them alone)."""
    now = now or timezone.now()
    busy_leads = Lead.objects.filter(
        referral_id=OuterRef("pk"), status__in=[LeadStatus.MATCHED, LeadStatus.DELIVERING]
    )
    undone = OutboxMessage.objects.filter(referral_id=OuterRef("pk"), done_at__isnull=True)
    pending = Auction.objects.filter(referral_id=OuterRef("pk"), status=AuctionStatus.PENDING)
    ready = (
        Referral.objects.filter(
            status=ReferralStatus.ROUTED, settle_by__lte=settle_by(now - SETTLE_CHECK_AFTER)
        )
        .filter(~Exists(busy_leads), ~Exists(undone), ~Exists(pending))
        .values_list("id", flat=True)[:limit]
    )
    return sum(1 for referral_id in list(ready) if settle(referral_id) is not None)


def overdue(now: datetime | None = None) -> QuerySet[Referral]:
    """Routed referrals not terminal by their deadline (the admin's "overdue" filter)."""
    return Referral.objects.filter(
        status=ReferralStatus.ROUTED, settle_by__lte=now or timezone.now()
    )


def to_redrive(*, now: datetime | None = None, limit: int = 200) -> list[uuid.UUID]:
    """Overdue referrals with no message of theirs written lately (an undone one is the
    outbox's to publish again; a recent one is being worked on)."""
    now = now or timezone.now()
    recent = OutboxMessage.objects.filter(referral_id=OuterRef("pk")).filter(
        Q(done_at__isnull=True) | Q(created_at__gte=now - REDRIVE_EVERY)
    )
    return list(
        overdue(now)
        .filter(~Exists(recent))
        .order_by("settle_by")
        .values_list("id", flat=True)[:limit]
    )
