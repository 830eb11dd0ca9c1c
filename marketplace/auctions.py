"""Ping-post auctions: who gets a referral when partners bid for it.

1. Intake (``routing.route``) opens an :class:`Auction` for the referral's ping-post
   candidates; the intake queues :func:`run` (the ``run_auction`` task, on the ``ping``
   queue) after commit and never waits on a partner.
2. :func:`run` loads the auction and its candidates with their signing secrets (two
   queries), checks every ping URL (SSRF), then pings all candidates at once
   (``marketplace.pings``): anonymised bands only, each ping under its product's timeout
   and all under the auction's budget.
3. The answers are written in one batch (a :class:`PingAttempt` each: outcome, reason,
   bid and its currency, latency, HTTP status) in the transaction that awards the auction:
   bidders ranked by bid (all in the ping's currency: an answer bidding in another is an
   error), ties to the applicant's cheaper product (consumer order), exclusive -> the best,
   shared -> the best ``max_winners``. Winners become leads carrying their bid, returned
   to the task, which queues their posts after commit: the ordinary direct-post path
   (``delivery.deliver``, the only disclosure).
4. A winner whose post is rejected, or fails for good after its retries, falls back
   (:func:`fall_back`): the next bidders get new leads until the auction has its winners
   again or no bidder is left; they are returned, and posted the same way.

Dedupe windows and caps are decided again at the award and at every fall-back, under the
applicant's row lock (``marketplace.locks``) and by the winners taking their cap counters
and their bids from the budgets (``marketplace.caps``): time has passed since
intake chose the candidates, and another referral of the same person (or the same auction
queued again after an outage) may have reached a partner meanwhile. A bidder whose partner
already has the person within its window, or whose product is at its cap, is passed over
(its ping row says why).

Nothing here queues work: these functions return what must happen next and the Celery
tasks (``marketplace.tasks``) queue it.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import OuterRef, Subquery
from django.utils import timezone

from consent import grants
from marketplace import caps, decisions, locks, pings
from marketplace.matching import CreditBox
from marketplace.models import (
    AttemptOutcome,
    Auction,
    AuctionMode,
    AuctionStatus,
    Lead,
    LeadStatus,
    PingAttempt,
    PingAward,
    Referral,
    ReferralStatus,
)
from partners import secretbox
from partners.holds import without_holds
from partners.models import DeliveryMode, PartnerStatus, Product, WebhookEndpoint
from partners.urlsafety import UnsafeUrlError, check_partner_url

# All an auction reads of its products (fewer columns: a cheaper load before the pings).
CANDIDATE_FIELDS = (
    "id",
    "partner_id",
    "is_active",
    "delivery_mode",
    "ping_url",
    "ping_timeout_ms",
    "max_shared_partners",
    "dedupe_days",
    "daily_cap",
    "monthly_cap",
    "partner__id",
    "partner__status",
)
# An auction runs within its budget (750 ms) of being queued; one still pending after this
# lost its message.
PENDING_STALE_AFTER = timedelta(minutes=1)
# Why a bidder did not win (its ping row's reason; the referral's when no bidder could).
PASSED_OVER_DEDUPE = "not awarded: the applicant reached this partner within its dedupe window"
PASSED_OVER_CAP = "not awarded: the product is at its daily or monthly cap"
PASSED_OVER_ALL = "every bidder already had the applicant or was at its cap"
# Lead statuses after which a winner's post will not be tried again.
POST_LOST = {LeadStatus.POST_REJECTED, LeadStatus.DELIVERY_FAILED}


@dataclass(frozen=True)
class AuctionRun:
    status: str  # AuctionStatus, or "skipped" when the auction was not (or no longer) pending
    winners: list[Lead]  # their leads, for the caller to post after commit


def stale_pending(*, now: datetime | None = None, limit: int = 500) -> list[uuid.UUID]:
    """Auctions still pending PENDING_STALE_AFTER after they were opened (their message was
    lost: a broker outage, a worker killed before it started), oldest first, for the
    sweeper to queue again (``marketplace.sweeps``). Running one twice is harmless: only
    one run can award it."""
    before = (now or timezone.now()) - PENDING_STALE_AFTER
    pending = Auction.objects.filter(status=AuctionStatus.PENDING, created_at__lte=before)
    return list(pending.order_by("created_at").values_list("id", flat=True)[:limit])


def open_auction(
    *,
    referral: Referral,
    boxes: Sequence[CreditBox],
    max_winners: int,
    exclusive: bool | None = None,
) -> Auction:
    """Store the auction (inside the intake's transaction); the caller queues :func:`run`
    after commit. Exclusive when any product is (``exclusive`` None), or as the routing
    strategy says."""
    if exclusive is None:
        exclusive = any(box.exclusive for box in boxes)
    auction = Auction.objects.create(
        referral=referral,
        mode=AuctionMode.EXCLUSIVE if exclusive else AuctionMode.SHARED,
        max_winners=1 if exclusive else max_winners,
        budget_ms=settings.AUCTION_BUDGET_MS,
        candidate_product_ids=[str(box.product_id) for box in boxes],
    )
    return auction


def _candidates(auction: Auction) -> list[Product]:
    """The auction's products in consumer order, each with its partner and the partner's
    current signing secret (``sealed_secret``, as ``webhooks.signing_secret`` picks it:
    the newest active endpoint's), in one query."""
    newest_secret = (
        WebhookEndpoint.objects.filter(partner_id=OuterRef("partner_id"), is_active=True)
        .order_by("-created_at")
        .values("secret_encrypted")[:1]
    )
    products = {
        str(p.id): p
        for p in without_holds(Product.objects.filter(id__in=auction.candidate_product_ids))
        .select_related("partner")
        .only(*CANDIDATE_FIELDS)
        .annotate(sealed_secret=Subquery(newest_secret))
    }
    ordered = [products[pid] for pid in auction.candidate_product_ids if pid in products]
    # Routable when the auction opened, but a partner may have been paused or held (or put
    # back in sandbox: live applicants never go to a partner in sandbox) since.
    statuses = {PartnerStatus.LIVE}
    if auction.referral.is_sandbox:
        statuses.add(PartnerStatus.SANDBOX)
    return [
        p
        for p in ordered
        if p.is_active
        and p.delivery_mode == DeliveryMode.PING_POST
        and p.partner.status in statuses
    ]


def _target(product: Product) -> pings.PingTarget | str:
    """Where and how to ping this product, or why it cannot be pinged."""
    ping_id = f"ping_{uuid.uuid4().hex}"
    if not product.ping_url:
        return "product has no ping URL"
    try:
        check_partner_url(product.ping_url)
    except UnsafeUrlError as exc:
        return str(exc)
    sealed = product.sealed_secret  # type: ignore[attr-defined]
    if not sealed:
        return "partner has no active signing secret"
    secret = secretbox.unseal(sealed)
    return pings.PingTarget(ping_id, product.ping_url, secret, product.ping_timeout_ms)


def run(*, auction_id: uuid.UUID) -> AuctionRun:
    """Ping, rank, award. Returns the auction's status (or "skipped") and the winners'
    leads, which the caller posts after commit."""
    began = time.monotonic()  # pings.fan_out's clock
    started_at = timezone.now()
    # No claim before the pings (it would be one more round trip on the latency path): a
    # duplicate run (a redelivered task) may ping again, which discloses nothing, and only
    # one of them can award (compare-and-set in _award).
    auction = (
        Auction.objects.select_related("referral__grant")
        .filter(pk=auction_id, status=AuctionStatus.PENDING)
        .first()
    )
    if auction is None:
        return AuctionRun("skipped", [])
    referral = auction.referral
    products = _candidates(auction)
    sends: list[tuple[pings.PingTarget, bytes]] = []
    planned: list[tuple[Product, pings.PingTarget | pings.PingResult]] = []
    payload = pings.ping_payload(referral, ping_id="")
    for product in products:
        target = _target(product)
        if isinstance(target, str):
            planned.append((product, pings.error_result(f"ping_{uuid.uuid4().hex}", target)))
            continue
        planned.append((product, target))
        sends.append((target, pings.encode({**payload, "ping_id": target.ping_id})))
    # The budget is the whole auction's: counted from the claim, not from the first ping.
    deadline = began + auction.budget_ms / 1000
    answers = {
        r.ping_id: r for r in pings.fan_out(sends, deadline=deadline, currency=referral.currency)
    }
    rows = [
        _ping_row(
            auction, product, answers[item.ping_id] if isinstance(item, pings.PingTarget) else item
        )
        for product, item in planned
    ]
    return _award(auction, rows, began, started_at)


def _ping_row(auction: Auction, product: Product, result: pings.PingResult) -> PingAttempt:
    return PingAttempt(
        auction=auction,
        partner=product.partner,
        product=product,
        ping_id=result.ping_id,
        url=product.ping_url[:500],
        started_at=result.started_at,
        latency_ms=result.latency_ms,
        http_status=result.http_status,
        outcome=result.outcome,
        reason=result.reason,
        bid=result.bid,
        bid_currency=result.bid_currency,
    )


def _rank(rows: list[PingAttempt]) -> list[PingAttempt]:
    """Bidders best first: the highest bid, then accepts at the fee schedule; a tie goes to
    the applicant's cheaper product (rows come in consumer order, and sort is stable)."""
    bidders = [row for row in rows if row.outcome == AttemptOutcome.SUCCESS]
    bidders.sort(key=lambda row: (row.bid is None, -(row.bid or 0)))
    for place, row in enumerate(bidders, start=1):
        row.rank = place
    return bidders


def _award(
    auction: Auction, rows: list[PingAttempt], began: float, started_at: datetime
) -> AuctionRun:
    bidders = _rank(rows)
    status = AuctionStatus.AWARDED if bidders else AuctionStatus.NO_BIDS
    with transaction.atomic():
        # Compare-and-set first: the row lock makes a concurrent duplicate wait, then skip.
        awarded = Auction.objects.filter(pk=auction.pk, status=AuctionStatus.PENDING).update(
            status=status,
            started_at=started_at,
            finished_at=timezone.now(),
            wall_ms=int((time.monotonic() - began) * 1000),
        )
        if not awarded:
            return AuctionRun("skipped", [])
        eligible = _still_eligible(auction, bidders)
        winners, _ = _award_winners(auction, eligible, alive=[])
        decisions.add_winners(
            referral_id=auction.referral_id, product_ids=[lead.product_id for lead in winners]
        )
        PingAttempt.objects.bulk_create(rows)
        if not winners:
            # No winner and no direct lead: the referral went nowhere after all.
            reason = "no ping-post partner bid" if not bidders else PASSED_OVER_ALL
            Referral.objects.filter(pk=auction.referral_id, status=ReferralStatus.ROUTED).exclude(
                leads__isnull=False
            ).update(status=ReferralStatus.NO_MATCH, status_reason=reason)
    return AuctionRun(status, winners)


def _still_eligible(auction: Auction, ranked: Sequence[PingAttempt]) -> list[PingAttempt]:
    """The bidders (best first) that may still get the applicant now: not already sent to
    their partner within its dedupe window, product not at its cap (read without a lock:
    the winners take their counters in ``_award_winners``). Locks the applicant's subject
    to the caller's commit; the passed-over rows' reasons say why (written by the
    caller)."""
    if not ranked:
        return []
    referral = auction.referral
    locks.lock_person(referral.subject_id)
    recent = locks.recently_received(
        subject_id=referral.subject_id,
        is_sandbox=referral.is_sandbox,
        windows={row.partner_id: row.product.dedupe_days for row in ranked},
    )
    # A cheap read first: the winners then take their counters (``_award_winners``).
    full = caps.at_cap(
        [
            (row.product_id, row.partner_id, row.product.daily_cap, row.product.monthly_cap)
            for row in ranked
            if row.partner_id not in recent
        ],
        is_sandbox=referral.is_sandbox,
    )
    eligible = []
    for row in ranked:
        if row.partner_id in recent:
            row.reason = PASSED_OVER_DEDUPE
        elif row.product_id in full:
            row.reason = PASSED_OVER_CAP
        else:
            eligible.append(row)
    return eligible


def _winners(
    auction: Auction, ranked: Sequence[PingAttempt], *, alive: Sequence[PingAttempt]
) -> list[PingAttempt]:
    """The next winners among ``ranked`` (best first) next to the ``alive`` ones: up to
    ``max_winners`` in all and, in a shared auction, greedily only while the whole shared
    set (the referral's direct leads, the alive winners and the kept ones) stays within
    every member product's ``max_shared_partners`` (routing already bounded
    ``max_winners`` by the direct products' limits)."""
    room = auction.max_winners - len(alive)
    if room <= 0:
        return []
    members = [*alive, *ranked]
    if auction.mode != AuctionMode.SHARED or all(
        row.product.max_shared_partners is None for row in members
    ):
        return list(ranked[:room])
    direct = Lead.objects.filter(referral_id=auction.referral_id, auction__isnull=True).count()
    limits = [r.product.max_shared_partners for r in alive if r.product.max_shared_partners]
    limit = min([direct + auction.max_winners, *limits])
    kept: list[PingAttempt] = []
    for row in ranked:
        if len(kept) >= room:
            break
        own = row.product.max_shared_partners
        row_limit = limit if own is None else min(limit, own)
        if direct + len(alive) + len(kept) + 1 <= row_limit:
            kept.append(row)
            limit = row_limit
    return kept


def _award_winners(
    auction: Auction, eligible: Sequence[PingAttempt], *, alive: Sequence[PingAttempt]
) -> tuple[list[Lead], list[PingAttempt]]:
    """The next winners among ``eligible`` (best first) get their leads, each taking its
    product's volume caps and its CPL (the bid) from the budgets (``marketplace.caps``),
    all or none. A winner refused there is passed over (its row's reason says so) and the
    winners are chosen again without it. Returns the new leads, for the caller to post
    after commit, and the rows passed over at the cap."""
    candidates = list(eligible)
    passed_over: list[PingAttempt] = []
    while True:
        nexts = _winners(auction, candidates, alive=alive)
        leads = [_lead_row(auction, row) for row in nexts]
        refused = caps.reserve(
            [
                caps.Claim(
                    lead.id,
                    row.product_id,
                    row.partner_id,
                    row.product.daily_cap,
                    row.product.monthly_cap,
                    bid=row.bid,
                    bid_currency=row.bid_currency,
                )
                for lead, row in zip(leads, nexts, strict=True)
            ],
            is_sandbox=auction.referral.is_sandbox,
        )
        if not refused:
            break
        for row in candidates:
            if row.product_id in refused:
                row.reason = PASSED_OVER_CAP
                passed_over.append(row)
        candidates = [row for row in candidates if row.product_id not in refused]
    for lead, row in zip(leads, nexts, strict=True):
        row.lead, row.award = lead, PingAward.WON
    if leads:
        assert auction.referral.grant is not None
        grants.add_matched_recipients(
            grant=auction.referral.grant, partner_ids=[lead.partner_id for lead in leads]
        )
        Lead.objects.bulk_create(leads)
    return leads, passed_over


def _lead_row(auction: Auction, row: PingAttempt) -> Lead:
    """The lead of a winning ping, not yet inserted (made a recipient of the applicant's
    'matched partners' consent when it is)."""
    referral = auction.referral
    return Lead(
        referral=referral,
        partner_id=row.partner_id,
        product_id=row.product_id,
        subject_id=referral.subject_id,
        is_sandbox=referral.is_sandbox,
        delivery_mode=DeliveryMode.PING_POST,
        status=LeadStatus.MATCHED,
        bid_amount=row.bid,
        bid_currency=row.bid_currency,
        auction=auction,
    )


def fall_back(*, lead_id: uuid.UUID) -> list[Lead]:
    """A winner's post was rejected or failed for good: give the lead to the next bidders
    until the auction has its winners again. Safe to run twice (it only ever fills the
    auction up to ``max_winners``). Not for consent refusals: the next bidder would be
    refused too, and nothing more may be disclosed. Returns the new leads, for the caller
    to post after commit."""
    with transaction.atomic():
        lead = Lead.objects.filter(pk=lead_id).only("auction_id", "status").first()
        if lead is None or lead.auction_id is None or lead.status not in POST_LOST:
            return []
        # The auction row serialises fallbacks of its winners (shared auctions have several).
        auction = (
            Auction.objects.select_for_update(no_key=True, of=("self",))
            .select_related("referral__grant")
            .get(pk=lead.auction_id)
        )
        PingAttempt.objects.filter(lead_id=lead_id, award=PingAward.WON).update(
            award=PingAward.POST_FAILED
        )
        rows = list(
            auction.pings.filter(rank__isnull=False)
            .select_related("partner", "product")
            .order_by("rank")
        )
        alive = [row for row in rows if row.award == PingAward.WON]
        waiting = [row for row in rows if row.award == PingAward.NONE]
        if len(alive) >= auction.max_winners:
            return []
        eligible = _still_eligible(auction, waiting)
        leads, passed_over = _award_winners(auction, eligible, alive=alive)
        decisions.add_winners(
            referral_id=auction.referral_id, product_ids=[lead.product_id for lead in leads]
        )
        for row in waiting:
            if row.award == PingAward.WON:
                PingAttempt.objects.filter(pk=row.pk).update(lead=row.lead, award=row.award)
            elif row not in eligible or row in passed_over:
                PingAttempt.objects.filter(pk=row.pk).update(reason=row.reason)
        return leads
