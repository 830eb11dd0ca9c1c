"""What a routing strategy is, as plain data: the contract between the strategy lab
(``marketplace.experiments``: named strategies, their versions, experiments and arms) and
routing (``marketplace.routing``), which carries a strategy out.

A strategy says *how* a referral's eligible candidates are distributed, never *who* is
eligible (``marketplace.eligibility`` decides that, the same for every strategy):

- ``product_defaults``: each product's own settings decide (exclusive or shared, direct or
  ping-post); the platform's behaviour before the lab existed, and the default.
- ``shared_broadcast``: the best ``max_partners`` candidates by score all get the lead.
- ``exclusive_best_value``: the one candidate with the highest score gets it alone.
- ``waterfall``: offered to one candidate at a time in score order; a reject falls to the
  next, at most ``max_partners`` in all.
- ``ping_post_auction``: every ping-post candidate is pinged, the best bids win (up to
  ``max_partners``); direct-post candidates are not used.

``explore`` chooses Thompson sampling over the learned posteriors (``True``) or their means
(``False``); ``return_penalty`` scales how much a partner's return rate lowers its score.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

from django.db import models


class StrategyKind(models.TextChoices):
    PRODUCT_DEFAULTS = "product_defaults", "Product settings decide"
    SHARED_BROADCAST = "shared_broadcast", "Shared: broadcast to the best N"
    EXCLUSIVE_BEST_VALUE = "exclusive_best_value", "Exclusive: highest expected value"
    WATERFALL = "waterfall", "Waterfall: one at a time in score order"
    PING_POST_AUCTION = "ping_post_auction", "Ping-post auction"


@dataclass(frozen=True, slots=True)
class StrategySpec:
    key: str  # the strategy's name, stable across versions
    version: int
    kind: str  # a StrategyKind value
    max_partners: int | None = None  # None: the platform's MAX_PARTNERS_PER_REFERRAL
    explore: bool = True
    return_penalty: Decimal = Decimal("1")
    params: dict[str, str] = field(default_factory=dict)  # kind-specific extras, as text


@dataclass(frozen=True, slots=True)
class StrategyChoice:
    """The strategy one referral is routed by, and why: the default, or an experiment arm."""

    spec: StrategySpec
    experiment_key: str | None = None
    arm_key: str | None = None
    bucket_version: int | None = None


DEFAULT_STRATEGY = StrategySpec(key="default", version=0, kind=StrategyKind.PRODUCT_DEFAULTS)
