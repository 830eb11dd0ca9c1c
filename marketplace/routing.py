"""From a referral to leads: match, respect consent scope, dedupe windows and caps, and
order partners for the applicant (cheapest APR first), never by fee alone.

Exclusive or shared is decided by the applicant's first choice (the cheapest candidate):
- exclusive and direct (or pull): that partner alone gets the lead;
- exclusive and ping-post: an exclusive auction among the exclusive ping-post candidates;
- otherwise shared: direct and pull partners get their leads at once (at most
  MAX_PARTNERS_PER_REFERRAL, and never more than any chosen product's
  ``max_shared_partners``), and the places left go to a shared auction among the
  ping-post candidates (all pinged; the best bidders win, see marketplace.auctions).

Dedupe windows are decided under the applicant's row lock (``marketplace.locks``); caps
and budgets are taken by compare-and-set when the leads are made (``marketplace.caps``):
here for direct and pull leads, at the award for auctioned ones. Both are decided again
when an auction is awarded.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import cast

from django.db import transaction

from consent import grants
from consent.models import ConsentGrant
from marketplace import caps, decisions, learning, ranking
from marketplace.auctions import open_auction
from marketplace.bands import segment_key
from marketplace.box_index import BoxIndex
from marketplace.eligibility import Screening, referral_time, screen, without_full
from marketplace.experiments.selection import choose_strategy
from marketplace.matching import Application, CreditBox, HasProduct, match, product_index
from marketplace.models import Auction, Lead, LeadStatus, Referral
from marketplace.regulation import rules_at
from marketplace.strategies import (
    limit_shared,
    plan,
    plan_product_defaults,
    shared_set_limit,
)
from marketplace.strategy_spec import StrategySpec
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


def screen_boxes(
    referral: Referral,
    grant: ConsentGrant,
    *,
    catalogue: tuple[BoxIndex[CreditBox], int | None] | None = None,
) -> Screening:
    """The referral's matched boxes, screened by every eligibility rule
    (``marketplace.eligibility``) under the regulatory rule set in force at its time.
    ``catalogue``: the product index and the version read for this referral, if read."""
    boxes, version = catalogue or product_index.current()
    rules = rules_at(referral_time(referral), version=version)
    matched = match(boxes, application_for(referral), apr_cap=rules.all_in_cost_cap)
    return screen(referral=referral, grant=grant, boxes=matched, rules=rules, version=version)


def select_boxes(referral: Referral, grant: ConsentGrant) -> list[CreditBox]:
    """The boxes the products' own settings choose (the ``product_defaults`` strategy):
    direct and pull ones get leads, ping-post ones are auctioned."""
    chosen = plan_product_defaults(_best_box_per_partner(screen_boxes(referral, grant).eligible))
    return _best_box_per_partner(chosen.direct + chosen.auctioned)


# Thompson draws in production; tests pass their own seeded generator.
_RNG = random.Random()  # noqa: S311 (sampling, not secrecy)

__all__ = ["Routed", "limit_shared", "route", "screen_boxes", "select_boxes", "shared_set_limit"]


@dataclass(frozen=True)
class Routed:
    """What routing made, and so what must happen after the intake commits."""

    leads: list[Lead]  # made now (direct post and pull)
    auction: Auction | None  # ping-post candidates, to auction after commit

    @property
    def to_post(self) -> list[Lead]:
        """Leads to post after commit; pull leads wait for their partner to fetch them."""
        return [lead for lead in self.leads if lead.delivery_mode == DeliveryMode.DIRECT_POST]


def route(*, referral: Referral, grant: ConsentGrant, rng: random.Random | None = None) -> Routed:
    """Route by the referral's strategy (``experiments.selection.choose_strategy``): screen, score,
    plan (``marketplace.strategies``), create the direct and pull leads, open an auction
    for the ping-post candidates, and record the decision (``marketplace.decisions``).
    Queues nothing: the caller queues the posts and the auction after commit
    (``marketplace.tasks.queue_referral``). All or nothing: in the caller's transaction
    (intake's, which holds the applicant's subject row), or its own. ``rng``: the source
    of Thompson draws (tests seed it)."""
    with transaction.atomic(savepoint=False):
        # One catalogue version read for the whole decision: the index and every cached
        # piece of reference data (rules, licences, strategies) answer for it.
        catalogue = product_index.current()
        choice = choose_strategy(
            subject_id=referral.subject_id, is_sandbox=referral.is_sandbox, version=catalogue[1]
        )
        spec = choice.spec
        screening = screen_boxes(referral, grant, catalogue=catalogue)
        segment = segment_key(
            risk_tier=referral.risk_tier, channel=referral.channel, amount=referral.amount
        )
        while True:
            consumer = _best_box_per_partner(screening.eligible)
            scored = _score(consumer, segment=segment, spec=spec, referral=referral, rng=rng)
            by_id = {box.product_id: box for box in consumer}
            chosen = plan(
                spec, consumer=consumer, by_score=[by_id[s.candidate.product_id] for s in scored]
            )
            leads = _lead_rows(referral, chosen.direct)
            # The authoritative cap check: the chosen direct and pull leads take their
            # counters, all or none. A refused product is screened out and the plan made
            # again (each round removes one at least); auctioned products take theirs at
            # the award.
            refused = caps.reserve(
                [
                    caps.Claim(
                        lead.id, box.product_id, box.partner_id, box.daily_cap, box.monthly_cap
                    )
                    for lead, box in zip(leads, chosen.direct, strict=True)
                ],
                is_sandbox=referral.is_sandbox,
                version=catalogue[1],
            )
            if not refused:
                break
            screening = without_full(screening, refused)
        _insert_leads(grant, leads)
        auction = None
        if chosen.auctioned:
            auction = open_auction(
                referral=referral,
                boxes=chosen.auctioned,
                max_winners=chosen.max_winners,
                exclusive=chosen.exclusive_auction,
            )
        entries = decisions.candidate_entries(
            screening=screening,
            scored=scored,
            chosen=[box.product_id for box in chosen.direct + chosen.auctioned],
            names=decisions.partner_names(
                [
                    *screening.eligible,
                    *product_index.boxes_of(cast(list[HasProduct], screening.rejected)),
                ]
            ),
        )
        line = {str(box.product_id) for box in chosen.waterfall}
        for entry in entries:
            entry["waterfall"] = entry["product"] in line
        decisions.record(
            referral=referral,
            choice=choice,
            segment=segment,
            candidates=entries,
            winners=[box.product_id for box in chosen.direct],
        )
    return Routed(leads, auction)


def _score(
    boxes: list[CreditBox],
    *,
    segment: str,
    spec: StrategySpec,
    referral: Referral,
    rng: random.Random | None,
) -> list[ranking.Scored]:
    """The candidates best score first, from the learned posteriors and fee cards."""
    if not boxes:
        return []
    known = learning.inputs.get()
    candidates = [
        ranking.Candidate(
            product_id=box.product_id,
            partner_id=box.partner_id,
            funnel=known.funnel(box.product_id, segment),
            card=known.card(box.product_id),
        )
        for box in boxes
    ]
    return ranking.rank(
        candidates,
        principal=referral.amount,
        explore=spec.explore,
        return_penalty=spec.return_penalty,
        rng=rng or _RNG,
    )


def _lead_rows(referral: Referral, chosen: list[CreditBox]) -> list[Lead]:
    """The direct and pull leads of the chosen boxes, not yet inserted (their ids exist)."""
    return [
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


def _insert_leads(grant: ConsentGrant, leads: list[Lead]) -> None:
    if not leads:
        return
    # Auction winners become recipients only when they win: a ping discloses nothing.
    grants.add_matched_recipients(grant=grant, partner_ids=[lead.partner_id for lead in leads])
    Lead.objects.bulk_create(leads)
