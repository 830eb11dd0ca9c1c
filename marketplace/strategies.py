"""Carrying out a routing strategy (``marketplace.strategy_spec``): from the eligible
candidates (one product per partner) and their scores to a :class:`Plan` of who gets a
lead now, who is pinged at an auction, and who waits in a waterfall. Pure: no database.

- ``product_defaults``: the platform's behaviour before strategies, unchanged: the
  applicant's cheapest candidate decides exclusive or shared (``plan_product_defaults``).
- ``shared_broadcast``: the best ``max_partners`` candidates by score, within every
  member's ``max_shared_partners``; exclusive products are left out (they never share). The
  direct and pull ones get their leads at once; ping-post ones are pinged first (their
  setting), all of them may win.
- ``exclusive_best_value``: the candidate with the highest score alone: a lead at once, or
  an exclusive auction of that one product if it is ping-post.
- ``waterfall``: direct-post candidates only (a pull lead is never refused synchronously,
  a ping-post one must be pinged), in score order, at most ``max_partners``: the first
  gets the lead; a post it rejects, or that fails for good, falls to the next
  (``marketplace.waterfall.fall_back``). A partner that accepts the post and rejects the
  applicant later does not move the lead on.
- ``ping_post_auction``: every ping-post candidate is pinged, the best ``max_partners``
  bids win (exclusive when ``max_partners`` is 1); direct and pull candidates are unused.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from django.conf import settings

from marketplace.matching import CreditBox
from marketplace.strategy_spec import StrategyKind, StrategySpec
from partners.models import DeliveryMode


@dataclass(frozen=True)
class Plan:
    direct: list[CreditBox]  # leads now (direct post and pull)
    auctioned: list[CreditBox] = field(default_factory=list)  # pinged after commit
    max_winners: int = 1
    exclusive_auction: bool | None = None  # None: from the products' own settings
    waterfall: list[CreditBox] = field(default_factory=list)  # the next, in order


def pinged(box: CreditBox) -> bool:
    return box.delivery_mode == DeliveryMode.PING_POST


def allows(box: CreditBox, size: int) -> bool:
    return box.max_shared is None or size <= box.max_shared


def shared_set_limit(boxes: Sequence[CreditBox]) -> int:
    """The most partners a shared lead may go to with all these products among them."""
    limits = [box.max_shared for box in boxes if box.max_shared is not None]
    return min([settings.MAX_PARTNERS_PER_REFERRAL, *limits])


def limit_shared(
    boxes: Sequence[CreditBox], *, already: int = 0, limit: int | None = None
) -> list[CreditBox]:
    """Greedy in the given order: keep a product only while the set (``already`` partners
    plus the kept ones plus it) stays within every member's ``max_shared``, ``limit`` and
    MAX_PARTNERS_PER_REFERRAL. ``already`` counts partners chosen before (their limits are
    the caller's to apply)."""
    kept: list[CreditBox] = []
    bound = settings.MAX_PARTNERS_PER_REFERRAL if limit is None else limit
    bound = min(bound, settings.MAX_PARTNERS_PER_REFERRAL)
    for box in boxes:
        size = already + len(kept) + 1
        box_limit = bound if box.max_shared is None else min(bound, box.max_shared)
        if size <= box_limit:
            kept.append(box)
            bound = box_limit
    return kept


def plan_product_defaults(candidates: Sequence[CreditBox]) -> Plan:
    """Candidates in consumer order (cheapest first); the products' settings decide."""
    if not candidates:
        return Plan(direct=[])
    first = candidates[0]
    if first.exclusive:
        if not pinged(first):
            return Plan(direct=[first])
        return Plan(
            direct=[], auctioned=[box for box in candidates if box.exclusive and pinged(box)]
        )
    shared = [box for box in candidates if not box.exclusive]
    direct = limit_shared([box for box in shared if not pinged(box)])
    # The auction fills the places left; a ping-post product that does not allow a set of
    # the direct leads plus itself is not pinged (winners are cut again at the award).
    places = shared_set_limit(direct) - len(direct)
    auctioned = [
        box for box in shared if pinged(box) and places > 0 and allows(box, len(direct) + 1)
    ]
    return Plan(direct=direct, auctioned=auctioned, max_winners=max(1, places))


def plan(
    spec: StrategySpec, *, consumer: Sequence[CreditBox], by_score: Sequence[CreditBox]
) -> Plan:
    """The plan for ``spec``: ``consumer`` holds the candidates cheapest first,
    ``by_score`` the same candidates best score first."""
    limit = spec.max_partners or settings.MAX_PARTNERS_PER_REFERRAL
    if spec.kind == StrategyKind.SHARED_BROADCAST:
        chosen = limit_shared([box for box in by_score if not box.exclusive], limit=limit)
        auctioned = [box for box in chosen if pinged(box)]
        return Plan(
            direct=[box for box in chosen if not pinged(box)],
            auctioned=auctioned,
            max_winners=max(1, len(auctioned)),
            exclusive_auction=False,
        )
    if spec.kind == StrategyKind.EXCLUSIVE_BEST_VALUE:
        if not by_score:
            return Plan(direct=[])
        best = by_score[0]
        if pinged(best):
            return Plan(direct=[], auctioned=[best], exclusive_auction=True)
        return Plan(direct=[best])
    if spec.kind == StrategyKind.WATERFALL:
        line = [box for box in by_score if box.delivery_mode == DeliveryMode.DIRECT_POST]
        line = line[: max(1, limit)]
        return Plan(direct=line[:1], waterfall=line[1:])
    if spec.kind == StrategyKind.PING_POST_AUCTION:
        auctioned = [box for box in by_score if pinged(box)]
        exclusive = limit == 1 or any(box.exclusive for box in auctioned)
        return Plan(
            direct=[],
            auctioned=auctioned,
            max_winners=1 if exclusive else min(limit, settings.MAX_PARTNERS_PER_REFERRAL),
            exclusive_auction=exclusive,
        )
    return plan_product_defaults(consumer)
