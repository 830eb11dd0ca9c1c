"""Which arm of which experiment a subject is in: GrowthBook's published bucketing, as
plain functions over plain data (no database).

For an experiment in layer L with layer range [a, b), coverage c and arm weights w:

1. the subject is in the layer range when ``inNamespace(subject, (L, a, b))`` (GrowthBook's
   namespace hash: FNV-1a 32, version 1, seed ``"__" + L``); experiments of one layer get
   disjoint ranges (``allocate_range``), so no subject is ever in two of them;
2. ``n = gbhash(seed, subject, 2)`` with ``seed = "<experiment key>:<bucket version>"``
   (hash version 2, the double FNV-1a); a new bucket version reshuffles every subject;
3. the arm is ``chooseVariation(n, getBucketRanges(len(w), c, w))``; -1 means the
   subject is outside the coverage, so not in the experiment.

The subject is the applicant's vault id (``consent.Subject``), never personal data, so one
person stays in one arm across all their referrals. Across layers a subject can fall into
several experiments; the one started first (then by key) wins, so a later experiment
never takes traffic from a running one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from growthbook.core import chooseVariation, gbhash, getBucketRanges, inNamespace

HASH_VERSION = 2


class NoRoomInLayer(ValueError):
    """The layer has no free range as wide as the experiment's share."""


@dataclass(frozen=True, slots=True)
class Plan:
    """An experiment's frozen assignment settings."""

    key: str
    bucket_version: int
    layer: str
    namespace: tuple[float, float]  # [start, end) of the layer
    coverage: float
    weights: tuple[float, ...]  # per arm, in arm order; normalised here
    arms: tuple[str, ...]  # arm keys, same order
    started_at: datetime | None = None  # precedence across layers

    def seed(self) -> str:
        return seed_for(self.key, self.bucket_version)


def seed_for(key: str, bucket_version: int) -> str:
    return f"{key}:{bucket_version}"


def normalised(weights: Sequence[Decimal | float]) -> tuple[float, ...]:
    total = sum(Decimal(str(w)) for w in weights)
    if total <= 0 or any(Decimal(str(w)) <= 0 for w in weights):
        raise ValueError("arm weights must be positive")
    return tuple(float(Decimal(str(w)) / total) for w in weights)


def arm_index(plan: Plan, subject: str) -> int | None:
    """The index of the subject's arm in ``plan``, or None when not in the experiment."""
    if not inNamespace(subject, (plan.layer, plan.namespace[0], plan.namespace[1])):
        return None
    n = gbhash(plan.seed(), subject, HASH_VERSION)
    if n is None:  # only for an unknown hash version
        return None
    ranges = getBucketRanges(len(plan.arms), plan.coverage, list(normalised(plan.weights)))
    index = chooseVariation(n, ranges)
    return None if index < 0 else index


def arm_of(plan: Plan, subject: str) -> str | None:
    index = arm_index(plan, subject)
    return None if index is None else plan.arms[index]


def by_precedence(plans: Sequence[Plan]) -> list[Plan]:
    """Started first wins; a plan not started yet (a preview) comes last."""
    return sorted(
        plans,
        key=lambda p: (p.started_at is None, p.started_at or datetime.min, p.key),
    )


def assign(plans: Sequence[Plan], subject: str) -> tuple[Plan, str] | None:
    """The experiment and arm a subject is in among the running ``plans``, or None."""
    for plan in by_precedence(plans):
        arm = arm_of(plan, subject)
        if arm is not None:
            return plan, arm
    return None


def allocate_range(
    *, share: Decimal, taken: Sequence[tuple[Decimal, Decimal]]
) -> tuple[Decimal, Decimal]:
    """The first free range of ``share`` in a layer [0, 1) whose ``taken`` ranges belong to
    its running experiments (first fit, so ranges freed by stopped experiments are reused)."""
    start = Decimal("0")
    for low, high in sorted(taken):
        if low - start >= share:
            break
        start = max(start, high)
    if Decimal("1") - start < share:
        raise NoRoomInLayer(f"no free {share} of the layer (taken: {sorted(taken)})")
    return start, start + share
