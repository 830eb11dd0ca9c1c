"""Always-valid statistics for experiments: confidence sequences that stay valid however
often they are looked at, a sample-ratio-mismatch check, and the stop rule. Pure
functions over numbers.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from scipy.stats import chisquare

SRM_P_VALUE = 0.001  # below this, the split is broken (the usual SRM threshold)


@dataclass(frozen=True, slots=True)
class Interval:
    estimate: float
    low: float
    high: float
    # True when the data say nothing yet: the interval is the parameter's whole range
    # (infinite, or a rate's [0, 1] after ``within``).
    uninformative: bool = False

    def excludes_zero(self) -> bool:
        return self.low > 0 or self.high < 0

    def within(self, low: float, high: float) -> Interval:
        """The interval intersected with the range the parameter cannot leave (a rate's
        [0, 1], a difference of rates' [-1, 1], a non-negative mean's [0, inf)). The true
        value lies in that range, so whenever the interval covers it the intersection
        does too: coverage at every look is kept, and no bound reads as an impossible
        value such as a conversion rate of -3% or 104%."""
        uninformative = self.uninformative or math.isinf(self.low) or math.isinf(self.high)
        return Interval(
            min(max(self.estimate, low), high),
            min(max(self.low, low), high),
            max(min(self.high, high), low),
            uninformative,
        )


def msprt_interval(*, estimate: float, variance: float, tau2: float, alpha: float) -> Interval:
    """The always-valid (1 - alpha) confidence interval of a normal mixture SPRT.

    Johari, Koomen, Pekelis and Walsh, "Peeking at A/B tests: why it matters, and what to
    do about it", KDD 2017 (and "Always valid inference", Operations Research 70(3), 2022):
    with an estimate whose variance is ``variance`` (V) and a normal mixing distribution
    N(0, tau2) over the effect, the mixture likelihood ratio against theta0 is

        Lambda = sqrt(V / (V + tau2)) * exp(tau2 (estimate - theta0)^2 / (2 V (V + tau2)))

    and by Ville's inequality P(Lambda >= 1/alpha at any time) <= alpha, so the set where
    Lambda < 1/alpha,

        estimate +- sqrt(V (V + tau2) / tau2 * log((V + tau2) / (V alpha^2))),

    covers theta at every look at once with probability >= 1 - alpha. This is the
    two-sided normal-mixture boundary of Howard, Ramdas, McAuliffe and Sekhon,
    "Time-uniform, nonparametric, nonasymptotic confidence sequences", Annals of
    Statistics 49(2), 2021, eq. (14), written for a mean instead of a sum. With V from
    sample variances it holds asymptotically (large samples), as in both papers' A/B use.
    """
    if not 0 < alpha < 1:
        raise ValueError("alpha must be in (0, 1)")
    if tau2 <= 0:
        raise ValueError("tau2 must be positive")
    if not variance > 0 or math.isinf(variance):
        return Interval(estimate, -math.inf, math.inf)
    half = math.sqrt(
        variance * (variance + tau2) / tau2 * math.log((variance + tau2) / (variance * alpha**2))
    )
    return Interval(estimate, estimate - half, estimate + half)


@dataclass(frozen=True, slots=True)
class Sample:
    """One arm's metric: its count, mean and (sample) variance per referral."""

    n: int
    mean: float
    variance: float

    @classmethod
    def of(cls, values: Sequence[float]) -> Sample:
        n = len(values)
        if n == 0:
            return cls(0, 0.0, math.inf)
        mean = math.fsum(values) / n
        variance = math.fsum((v - mean) ** 2 for v in values) / (n - 1) if n > 1 else math.inf
        return cls(n, mean, variance)

    @classmethod
    def of_rate(cls, *, successes: int, n: int) -> Sample:
        """A conversion rate; its variance from (x + 1) / (n + 2), so that no conversions
        yet (or all) still gives an interval of some width rather than none."""
        if n == 0:
            return cls(0, 0.0, math.inf)
        smoothed = (successes + 1) / (n + 2)
        return cls(n, successes / n, smoothed * (1 - smoothed))


def difference_interval(
    *, control: Sample, treatment: Sample, alpha: float, planned_per_arm: int
) -> Interval:
    """Always-valid interval of ``treatment.mean - control.mean`` (independent arms). The
    mixing variance tau2 is the estimate's variance at ``planned_per_arm`` referrals per
    arm, where the interval is tightest (Johari et al. 2017, section 4.2)."""
    if control.n < 2 or treatment.n < 2:
        return Interval(treatment.mean - control.mean, -math.inf, math.inf)
    variance = control.variance / control.n + treatment.variance / treatment.n
    tau2 = (control.variance + treatment.variance) / max(planned_per_arm, 1)
    if not tau2 > 0 or math.isinf(tau2):
        return Interval(treatment.mean - control.mean, -math.inf, math.inf)
    return msprt_interval(
        estimate=treatment.mean - control.mean, variance=variance, tau2=tau2, alpha=alpha
    )


def mean_interval(*, sample: Sample, alpha: float, planned: int) -> Interval:
    """Always-valid interval of one arm's mean (same mixture, one sample)."""
    if sample.n < 2:
        return Interval(sample.mean, -math.inf, math.inf)
    tau2 = sample.variance / max(planned, 1)
    if not tau2 > 0 or math.isinf(tau2):
        return Interval(sample.mean, -math.inf, math.inf)
    return msprt_interval(
        estimate=sample.mean, variance=sample.variance / sample.n, tau2=tau2, alpha=alpha
    )


def rate_interval(*, successes: int, n: int, alpha: float, planned: int) -> Interval:
    """Always-valid interval of a conversion rate, inside [0, 1]: the normal mixture's
    interval runs past 0 or 1 when the rate is near either end or the sample is small."""
    sample = Sample.of_rate(successes=successes, n=n)
    return mean_interval(sample=sample, alpha=alpha, planned=planned).within(0.0, 1.0)


def rate_difference_interval(
    *, control: tuple[int, int], treatment: tuple[int, int], alpha: float, planned_per_arm: int
) -> Interval:
    """Always-valid interval of a difference of two rates ((successes, n) each), inside
    [-1, 1]."""
    return difference_interval(
        control=Sample.of_rate(successes=control[0], n=control[1]),
        treatment=Sample.of_rate(successes=treatment[0], n=treatment[1]),
        alpha=alpha,
        planned_per_arm=planned_per_arm,
    ).within(-1.0, 1.0)


@dataclass(frozen=True, slots=True)
class SampleRatio:
    p_value: float
    mismatch: bool


def sample_ratio_check(*, counts: Sequence[int], weights: Sequence[float]) -> SampleRatio:
    """Chi-square goodness of fit of the arms' referral counts against their weights
    (Fabijan et al., "Diagnosing sample ratio mismatch in online controlled experiments",
    KDD 2019): p < 0.001 says the assignment is broken, whatever the metrics say."""
    total = sum(counts)
    if total == 0 or len(counts) < 2:
        return SampleRatio(1.0, False)
    weight_sum = math.fsum(weights)
    expected = [total * w / weight_sum for w in weights]
    p_value = float(chisquare(counts, f_exp=expected).pvalue)
    return SampleRatio(p_value, p_value < SRM_P_VALUE)


@dataclass(frozen=True, slots=True)
class StopAdvice:
    stop: bool
    reason: str


def stop_rule(
    *,
    ratio: SampleRatio,
    primary: Mapping[str, Interval],
    total: int,
    max_referrals: int,
) -> StopAdvice:
    """Stop on a broken split (SRM), when a treatment arm's always-valid interval of the
    primary metric's difference from control excludes zero, or at the maximum sample
    size. Checking this every day is safe: the intervals are valid at every look."""
    if ratio.mismatch:
        return StopAdvice(True, f"sample ratio mismatch (p = {ratio.p_value:.2g})")
    decided = sorted(arm for arm, interval in primary.items() if interval.excludes_zero())
    if decided:
        return StopAdvice(True, f"primary metric differs from control: {', '.join(decided)}")
    if total >= max_referrals:
        return StopAdvice(True, f"maximum sample reached ({total} referrals)")
    return StopAdvice(False, "")
