"""From a referral to leads: match, respect consent scope, dedupe windows and caps, and
order partners for the applicant (cheapest APR first), never by fee alone.

Exclusive or shared is decided by the applicant's first choice (the cheapest candidate):
- exclusive and direct (or pull): that partner alone gets the lead;
- exclusive and ping-post: an exclusive auction among the exclusive ping-post candidates;
- otherwise shared: direct and pull partners get their leads at once (at most
  MAX_PARTNERS_PER_REFERRAL, and never more than any chosen product's
  ``max_shared_partners``), and the places left go to a shared auction among the
  ping-post candidates (all pinged; the best bidders win, see marketplace.auctions).

Dedupe windows and caps are decided under row locks taken in the platform's one lock
order (``marketplace.locks``), and decided again when an auction is awarded.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from django.conf import settings
from django.db import transaction

from consent import grants
from consent.models import ConsentGrant
from marketplace.auctions import open_auction
from marketplace.eligibility import Screening, screen
from marketplace.matching import Application, CreditBox, match, product_index
from marketplace.models import Auction, Lead, LeadStatus, Referral
from marketplace.regulation import default_rules
from partners.models import DeliveryMode


def application_for(referral: Referral) -> Application:
    return Application(
        amount=referral.amount,
        term_months=referral.term_months,
        risk_tier=referral.risk_tier,
        region=referral.region,
        age=referral.age,
        income_floor=referral.income_band_floor,
        employment_type=referral.employment_type,
        purpose=referral.purpose,
        channel=referral.channel,
    )


def _best_box_per_partner(boxes: Sequence[CreditBox]) -> list[CreditBox]:
    """One product per partner, the applicant's cheapest; partners in the same order."""
    best: dict[uuid.UUID, CreditBox] = {}
    for box in sorted(boxes, key=lambda b: (b.apr_min, b.apr_max, str(b.product_id))):
        best.setdefault(box.partner_id, box)
    return list(best.values())


def screen_boxes(referral: Referral, grant: ConsentGrant) -> Screening:
    """The referral's matched boxes, screened by every eligibility rule
    (``marketplace.eligibility``) under the regulatory rule set in force at its time."""
    rules = default_rules()
    boxes = match(product_index.boxes(), application_for(referral), apr_cap=rules.all_in_cost_cap)
    return screen(referral=referral, grant=grant, boxes=boxes, rules=rules)


def select_boxes(referral: Referral, grant: ConsentGrant) -> list[CreditBox]:
    candidates = _best_box_per_partner(screen_boxes(referral, grant).eligible)
    if not candidates:
        return []
    if candidates[0].exclusive:
        if not _pinged(candidates[0]):
            return candidates[:1]
        return [box for box in candidates if box.exclusive and _pinged(box)]
    shared = [box for box in candidates if not box.exclusive]
    direct = limit_shared([box for box in shared if not _pinged(box)])
    # The auction fills the places left; a ping-post product that does not allow a set of
    # the direct leads plus itself is not pinged (winners are cut again at the award).
    places = shared_set_limit(direct) - len(direct)
    auctioned = [
        box for box in shared if _pinged(box) and places > 0 and _allows(box, len(direct) + 1)
    ]
    keep = {box.product_id for box in direct + auctioned}
    return [box for box in shared if box.product_id in keep]


def _allows(box: CreditBox, size: int) -> bool:
    return box.max_shared is None or size <= box.max_shared


def shared_set_limit(boxes: Sequence[CreditBox]) -> int:
    """The most partners a shared lead may go to with all these products among them."""
    limits = [box.max_shared for box in boxes if box.max_shared is not None]
    return min([settings.MAX_PARTNERS_PER_REFERRAL, *limits])


def limit_shared(boxes: Sequence[CreditBox], *, already: int = 0) -> list[CreditBox]:
    """Greedy in the given (consumer) order: keep a product only while the set (``already``
    partners plus the kept ones plus it) stays within every member's ``max_shared`` and
    MAX_PARTNERS_PER_REFERRAL. ``already`` counts partners chosen before (their limits are
    the caller's to apply)."""
    kept: list[CreditBox] = []
    limit = settings.MAX_PARTNERS_PER_REFERRAL
    for box in boxes:
        size = already + len(kept) + 1
        box_limit = limit if box.max_shared is None else min(limit, box.max_shared)
        if size <= box_limit:
            kept.append(box)
            limit = box_limit
    return kept


def _pinged(box: CreditBox) -> bool:
    return box.delivery_mode == DeliveryMode.PING_POST


@dataclass(frozen=True)
class Routed:
    """What routing made, and so what must happen after the intake commits."""

    leads: list[Lead]  # made now (direct post and pull)
    auction: Auction | None  # ping-post candidates, to auction after commit

    @property
    def to_post(self) -> list[Lead]:
        """Leads to post after commit; pull leads wait for their partner to fetch them."""
        return [lead for lead in self.leads if lead.delivery_mode == DeliveryMode.DIRECT_POST]


def route(*, referral: Referral, grant: ConsentGrant) -> Routed:
    """Create the referral's direct and pull leads and open an auction for its ping-post
    candidates. Queues nothing: the caller queues the posts and the auction after commit
    (``marketplace.tasks.queue_routed``). All or nothing: in the caller's transaction
    (intake's, which holds the applicant's subject row), or its own."""
    with transaction.atomic(savepoint=False):
        selected = select_boxes(referral, grant)
        auctioned = [box for box in selected if _pinged(box)]
        chosen = [box for box in selected if not _pinged(box)]
        leads = _direct_leads(referral, grant, chosen)
        auction = None
        if auctioned:
            auction = open_auction(
                referral=referral,
                boxes=auctioned,
                max_winners=max(1, shared_set_limit(chosen) - len(chosen)),
            )
    return Routed(leads, auction)


def _direct_leads(referral: Referral, grant: ConsentGrant, chosen: list[CreditBox]) -> list[Lead]:
    if not chosen:
        return []
    # Auction winners become recipients only when they win: a ping discloses nothing.
    grants.add_matched_recipients(grant=grant, partner_ids=[box.partner_id for box in chosen])
    leads = [
        Lead(
            referral=referral,
            partner_id=box.partner_id,
            product_id=box.product_id,
            subject_id=referral.subject_id,
            is_sandbox=referral.is_sandbox,
            delivery_mode=box.delivery_mode,
            status=LeadStatus.AVAILABLE
            if box.delivery_mode == DeliveryMode.PULL
            else LeadStatus.MATCHED,
        )
        for box in chosen
    ]
    Lead.objects.bulk_create(leads)
    return leads
