"""Conversion-rate intervals stay inside the range a rate can take ([0, 1]; a difference
of rates [-1, 1]) at any sample size, and still cover the true rate at every look in at
least 1 - alpha of simulated experiments when the samples are tiny, where the normal
mixture's own interval runs past 0 and 1."""

from __future__ import annotations

import math
import random

from hypothesis import given
from hypothesis import strategies as st

from marketplace.experiments.sequential import (
    Interval,
    Sample,
    mean_interval,
    rate_difference_interval,
    rate_interval,
)


@st.composite
def counts(draw: st.DrawFn) -> tuple[int, int]:
    n = draw(st.integers(min_value=0, max_value=400))
    return draw(st.integers(min_value=0, max_value=n)), n


alphas = st.sampled_from([0.01, 0.05, 0.1, 0.2])
planned = st.integers(min_value=1, max_value=50_000)


@given(counts(), alphas, planned)
def test_a_rate_interval_lies_in_zero_one_around_the_observed_rate(
    observed: tuple[int, int], alpha: float, plan: int
) -> None:
    successes, n = observed
    interval = rate_interval(successes=successes, n=n, alpha=alpha, planned=plan)
    assert 0.0 <= interval.low <= interval.estimate <= interval.high <= 1.0
    if n:
        assert interval.estimate == successes / n
    if n < 2:
        assert interval.uninformative and (interval.low, interval.high) == (0.0, 1.0)


@given(counts(), counts(), alphas, planned)
def test_a_rate_difference_interval_lies_in_minus_one_one(
    control: tuple[int, int], treatment: tuple[int, int], alpha: float, plan: int
) -> None:
    interval = rate_difference_interval(
        control=control, treatment=treatment, alpha=alpha, planned_per_arm=plan
    )
    assert -1.0 <= interval.low <= interval.estimate <= interval.high <= 1.0


def test_the_unclamped_interval_would_leave_zero_one() -> None:
    """What the clamp is for: 0 of 20 (or 20 of 20) gives the mixture interval a bound
    below 0 (above 1), a rate no arm can have."""
    raw_low = mean_interval(sample=Sample.of_rate(successes=0, n=20), alpha=0.05, planned=100)
    raw_high = mean_interval(sample=Sample.of_rate(successes=20, n=20), alpha=0.05, planned=100)
    assert raw_low.low < 0 and raw_high.high > 1
    assert rate_interval(successes=0, n=20, alpha=0.05, planned=100).low == 0.0
    assert rate_interval(successes=20, n=20, alpha=0.05, planned=100).high == 1.0


def test_clamping_never_drops_a_value_the_parameter_can_take() -> None:
    inside = Interval(0.2, -0.1, 0.5).within(0.0, 1.0)
    assert (inside.low, inside.high) == (0.0, 0.5)
    whole = Interval(0.0, -math.inf, math.inf).within(0.0, 1.0)
    assert (whole.low, whole.high, whole.uninformative) == (0.0, 1.0, True)
    assert not Interval(0.2, 0.1, 0.3).within(0.0, 1.0).uninformative


def _covered_at_every_look(rng: random.Random, rate: float, *, looks: int, plan: int) -> bool:
    """One experiment looked at after every referral from the first: does the interval
    hold the true rate each time? And it never leaves [0, 1]."""
    successes = 0
    for n in range(1, looks + 1):
        successes += rng.random() < rate
        interval = rate_interval(successes=successes, n=n, alpha=ALPHA, planned=plan)
        assert 0.0 <= interval.low <= interval.high <= 1.0
        if not interval.low <= rate <= interval.high:
            return False
    return True


ALPHA = 0.1


def test_tiny_samples_still_cover_the_true_rate_at_every_look() -> None:
    """A simulation with its own truth: rates near 0, at 1/2 and near 1, from the first
    referral to the 80th, looked at after each one (the always-valid promise), with the
    mixture tuned for a small experiment (50 referrals per arm) and for the lab's default
    (10,000). At least 1 - alpha of the runs must cover at every look. (Seeded; the
    interval is asymptotically valid, and the smoothed variance of ``Sample.of_rate`` is
    what keeps the first looks, at 0 of n or n of n, from collapsing to a point.)"""
    rng = random.Random(20261201)
    runs = 300
    for rate in (0.03, 0.5, 0.95):
        for plan in (50, 10_000):
            covered = sum(
                _covered_at_every_look(rng, rate, looks=80, plan=plan) for _ in range(runs)
            )
            assert covered / runs >= 1 - ALPHA, (rate, plan, covered / runs)


def test_a_point_estimate_looked_at_every_time_would_not_cover() -> None:
    """The coverage check can fail: the naive 90% Wald interval of a rate (clamped the
    same way), looked at after every referral, misses the truth in far more than 10% of
    the same runs."""
    rng = random.Random(5)
    runs, misses = 300, 0
    for _ in range(runs):
        successes = 0
        for n in range(1, 81):
            successes += rng.random() < 0.5
            p = successes / n
            half = 1.645 * math.sqrt(p * (1 - p) / n)
            if not max(0.0, p - half) <= 0.5 <= min(1.0, p + half):
                misses += 1
                break
    assert misses / runs > 0.3
