"""The lab's statistics: the always-valid interval covers the true difference in at least
1 - alpha of simulated experiments even when it is checked after every batch; the
sample-ratio check flags a broken split and not a fair one; the stop rule."""

from __future__ import annotations

import math
import random

import pytest

from marketplace.experiments.sequential import (
    Interval,
    Sample,
    SampleRatio,
    difference_interval,
    msprt_interval,
    sample_ratio_check,
    stop_rule,
)


class _Running:
    """Count, sum and sum of squares so far: a look after every batch costs O(batch)."""

    def __init__(self) -> None:
        self.n, self.total, self.squares = 0, 0.0, 0.0

    def add(self, values: list[float]) -> None:
        self.n += len(values)
        self.total += math.fsum(values)
        self.squares += math.fsum(v * v for v in values)

    def sample(self) -> Sample:
        mean = self.total / self.n
        return Sample(self.n, mean, (self.squares - self.n * mean * mean) / (self.n - 1))


def _covered_throughout(
    rng: random.Random,
    draw_a: object,
    draw_b: object,
    truth: float,
    *,
    batches: int,
    batch: int,
    alpha: float,
) -> bool:
    a, b = _Running(), _Running()
    for _ in range(batches):
        a.add([draw_a(rng) for _ in range(batch)])  # type: ignore[operator]
        b.add([draw_b(rng) for _ in range(batch)])  # type: ignore[operator]
        interval = difference_interval(
            control=a.sample(), treatment=b.sample(), alpha=alpha, planned_per_arm=2000
        )
        if not interval.low <= truth <= interval.high:
            return False
    return True


@pytest.mark.parametrize(
    ("name", "draw_a", "draw_b", "truth"),
    [
        (
            "conversion 10% vs 12%",
            lambda r: float(r.random() < 0.10),
            lambda r: float(r.random() < 0.12),
            0.02,
        ),
        (
            # Revenue per referral: most referrals earn nothing, a few earn a skewed fee.
            "revenue, zero-inflated exponential",
            lambda r: r.expovariate(1 / 80) if r.random() < 0.2 else 0.0,
            lambda r: r.expovariate(1 / 80) if r.random() < 0.2 else 0.0,
            0.0,
        ),
    ],
)
def test_the_interval_covers_the_truth_at_every_look(
    name: str, draw_a: object, draw_b: object, truth: float
) -> None:
    rng = random.Random(20261201)
    alpha = 0.1
    runs = 300
    covered = sum(
        _covered_throughout(rng, draw_a, draw_b, truth, batches=30, batch=100, alpha=alpha)
        for _ in range(runs)
    )
    assert covered / runs >= 1 - alpha, (name, covered / runs)


def test_a_fixed_sample_interval_checked_at_every_look_would_not_cover() -> None:
    """The check above can fail: the naive 90% z-interval, looked at after every batch,
    misses the truth in far more than 10% of the same simulated runs."""
    rng = random.Random(7)
    runs, misses = 300, 0
    for _ in range(runs):
        a: list[float] = []
        b: list[float] = []
        for _ in range(30):
            a += [float(rng.random() < 0.1) for _ in range(100)]
            b += [float(rng.random() < 0.1) for _ in range(100)]
            sa, sb = Sample.of(a), Sample.of(b)
            half = 1.645 * math.sqrt(sa.variance / sa.n + sb.variance / sb.n)
            if abs(sb.mean - sa.mean) > half:
                misses += 1
                break
    assert misses / runs > 0.2


def test_the_interval_is_the_mixture_boundary_from_the_paper() -> None:
    # V = 0.01, tau2 = 0.01, alpha = 0.05: half-width sqrt(V (V + tau2) / tau2 * log((V +
    # tau2) / (V alpha^2))) = sqrt(0.02 * log(800)), worked by hand.
    interval = msprt_interval(estimate=1.0, variance=0.01, tau2=0.01, alpha=0.05)
    half = math.sqrt(0.02 * math.log(800))
    assert interval.low == pytest.approx(1 - half)
    assert interval.high == pytest.approx(1 + half)


def test_the_interval_shrinks_as_data_arrives_and_finds_a_real_difference() -> None:
    rng = random.Random(3)
    a = [float(rng.random() < 0.10) for _ in range(20000)]
    b = [float(rng.random() < 0.16) for _ in range(20000)]
    small = difference_interval(
        control=Sample.of(a[:500]),
        treatment=Sample.of(b[:500]),
        alpha=0.05,
        planned_per_arm=5000,
    )
    large = difference_interval(
        control=Sample.of(a), treatment=Sample.of(b), alpha=0.05, planned_per_arm=5000
    )
    assert large.high - large.low < (small.high - small.low) / 3
    assert large.excludes_zero() and large.low > 0


def test_too_little_data_gives_no_interval() -> None:
    interval = difference_interval(
        control=Sample.of([1.0]), treatment=Sample.of([0.0, 1.0]), alpha=0.05, planned_per_arm=100
    )
    assert math.isinf(interval.low) and math.isinf(interval.high)


def test_sample_ratio_check_flags_a_broken_split_and_not_a_fair_one() -> None:
    rng = random.Random(11)
    fair_flags = 0
    for _ in range(200):
        n = [0, 0]
        for _ in range(5000):
            n[rng.random() < 0.5] += 1
        fair_flags += sample_ratio_check(counts=n, weights=[1, 1]).mismatch
    assert fair_flags <= 2  # p < 0.001 by chance: about 0.2 in 200

    # A split that loses 5% of one arm's referrals (a logging or routing bug).
    broken = sample_ratio_check(counts=[20000, 19000], weights=[1, 1])
    assert broken.mismatch and broken.p_value < 0.001
    # Unequal weights honoured: 1:3 observed as 1:3 is fine, as 1:1 is not.
    assert not sample_ratio_check(counts=[2510, 7490], weights=[0.25, 0.75]).mismatch
    assert sample_ratio_check(counts=[5000, 5000], weights=[0.25, 0.75]).mismatch


def test_stop_rule() -> None:
    fine = SampleRatio(0.4, False)
    open_interval = {"b": Interval(0.01, -0.02, 0.04)}
    assert not stop_rule(ratio=fine, primary=open_interval, total=100, max_referrals=1000).stop
    assert stop_rule(
        ratio=fine, primary={"b": Interval(0.03, 0.01, 0.05)}, total=100, max_referrals=1000
    ).reason.startswith("primary metric differs")
    assert (
        "maximum"
        in stop_rule(ratio=fine, primary=open_interval, total=1000, max_referrals=1000).reason
    )
    assert (
        "mismatch"
        in stop_rule(
            ratio=SampleRatio(1e-5, True), primary=open_interval, total=10, max_referrals=1000
        ).reason
    )
