"""An experiment's results per arm: funnel, conversion and revenue per referral with
always-valid intervals, the sample-ratio check and the stop rule's advice.

An arm's referrals are the live referrals whose routing decision names the experiment,
the arm and the current bucket version (``marketplace.models.RoutingDecision``): what
routing actually did, so a split broken anywhere on the way shows in the ratio check.
"""

from __future__ import annotations

import math
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Decimal

from django.db.models import Count, Q, QuerySet

from marketplace.experiments.lifecycle import ordered_arms
from marketplace.experiments.revenue import revenue_source
from marketplace.experiments.sequential import (
    Interval,
    Sample,
    SampleRatio,
    StopAdvice,
    difference_interval,
    mean_interval,
    rate_difference_interval,
    rate_interval,
    sample_ratio_check,
    stop_rule,
)
from marketplace.models import (
    EventType,
    Experiment,
    Lead,
    LeadEvent,
    PrimaryMetric,
    RoutingDecision,
)

STAGES = ("matched", "delivered", "accepted", "approved", "funded")
# A later stage implies the earlier ones even when a partner skips reporting them.
REACHED_BY = {
    "accepted": (EventType.ACCEPTED, EventType.APPROVED, EventType.FUNDED),
    "approved": (EventType.APPROVED, EventType.FUNDED),
    "funded": (EventType.FUNDED,),
}


@dataclass
class ArmResult:
    key: str
    is_control: bool
    strategy: str  # "key vN"
    weight: Decimal
    referrals: int = 0
    funnel: dict[str, int] = field(default_factory=dict)
    revenue: Sample | None = None  # per referral, in the experiment's currency
    conversion: Interval | None = None  # primary conversion rate of the arm
    revenue_interval: Interval | None = None
    # Against control (treatment arms only).
    conversion_lift: Interval | None = None
    revenue_lift: Interval | None = None

    def rate(self, stage: str) -> float:
        return self.funnel.get(stage, 0) / self.referrals if self.referrals else 0.0


@dataclass
class Results:
    experiment: Experiment
    arms: list[ArmResult]
    ratio: SampleRatio
    advice: StopAdvice
    has_revenue: bool
    conversion_stage: str  # the stage whose rate is the arm's conversion
    # The treatment arm whose primary metric is surely above control's (its interval's low
    # end above zero) by the most; None while no arm is.
    winner: str | None

    @property
    def total(self) -> int:
        return sum(arm.referrals for arm in self.arms)


def decisions(experiment: Experiment) -> QuerySet[RoutingDecision]:
    return RoutingDecision.objects.filter(
        experiment_key=experiment.key,
        bucket_version=experiment.bucket_version,
        referral__is_sandbox=False,
    )


def _referrals_by_arm(experiment: Experiment) -> dict[str, list[uuid.UUID]]:
    by_arm: dict[str, list[uuid.UUID]] = defaultdict(list)
    for referral_id, arm_key in decisions(experiment).values_list("referral_id", "arm_key"):
        by_arm[arm_key].append(referral_id)
    return by_arm


def _funnel(experiment: Experiment) -> dict[str, dict[str, int]]:
    """Referrals of each arm that reached each stage (not undone by a reversal)."""
    referrals = decisions(experiment).values("referral_id")
    funnel: dict[str, dict[str, int]] = defaultdict(dict)
    arm = "referral__decision__arm_key"
    for row in (
        Lead.objects.filter(referral_id__in=referrals)
        .values(arm)
        .annotate(
            matched=Count("referral_id", distinct=True),
            delivered=Count("referral_id", filter=Q(delivered_at__isnull=False), distinct=True),
        )
    ):
        funnel[row[arm]].update(matched=row["matched"], delivered=row["delivered"])
    event_arm = "lead__referral__decision__arm_key"
    events = LeadEvent.objects.filter(
        lead__referral_id__in=referrals, reversed_by__isnull=True
    ).values(event_arm)
    counts = {
        stage: Count("lead__referral_id", filter=Q(type__in=types), distinct=True)
        for stage, types in REACHED_BY.items()
    }
    for row in events.annotate(**counts):
        funnel[row[event_arm]].update({stage: row[stage] for stage in REACHED_BY})
    return funnel


def results(experiment: Experiment) -> Results:
    arms = ordered_arms(experiment)
    alpha = float(experiment.alpha)
    planned = max(experiment.max_referrals // max(len(arms), 1), 2)
    by_arm = _referrals_by_arm(experiment)
    funnel = _funnel(experiment)
    source = revenue_source()
    revenue: dict[uuid.UUID, Decimal] = {}
    if source is not None:
        every = [rid for ids in by_arm.values() for rid in ids]
        revenue = source(every, experiment.currency)
    conversion_stage = (
        "accepted" if experiment.primary_metric == PrimaryMetric.ACCEPTED else "funded"
    )

    rows: list[ArmResult] = []
    for arm in arms:
        ids = by_arm.get(arm.key, [])
        row = ArmResult(
            key=arm.key,
            is_control=arm.is_control,
            strategy=str(arm.strategy_version),
            weight=arm.weight,
            referrals=len(ids),
            funnel={stage: funnel.get(arm.key, {}).get(stage, 0) for stage in STAGES},
        )
        if source is not None:
            values = [float(revenue.get(rid, Decimal("0"))) for rid in ids]
            row.revenue = Sample.of(values)
            interval = mean_interval(sample=row.revenue, alpha=alpha, planned=planned)
            # Net revenue per referral is never below zero (a credit or reversal only
            # undoes a charge booked for it), so neither is its mean; should a negative
            # net ever show up, that premise is off and the interval is left as it is.
            if all(value >= 0 for value in values):
                interval = interval.within(0.0, math.inf)
            row.revenue_interval = interval
        row.conversion = rate_interval(
            successes=row.funnel[conversion_stage], n=row.referrals, alpha=alpha, planned=planned
        )
        rows.append(row)

    control = next(row for row in rows if row.is_control)
    control_counts = (control.funnel[conversion_stage], control.referrals)
    primary: dict[str, Interval] = {}
    for row in rows:
        if row.is_control:
            continue
        row.conversion_lift = rate_difference_interval(
            control=control_counts,
            treatment=(row.funnel[conversion_stage], row.referrals),
            alpha=alpha,
            planned_per_arm=planned,
        )
        if control.revenue is not None and row.revenue is not None:
            row.revenue_lift = difference_interval(
                control=control.revenue,
                treatment=row.revenue,
                alpha=alpha,
                planned_per_arm=planned,
            )
        lift = (
            row.revenue_lift
            if experiment.primary_metric == PrimaryMetric.REVENUE
            else (row.conversion_lift)
        )
        if lift is not None:
            primary[row.key] = lift

    better = [(interval.estimate, key) for key, interval in primary.items() if interval.low > 0]
    ratio = sample_ratio_check(
        counts=[row.referrals for row in rows], weights=[float(row.weight) for row in rows]
    )
    advice = stop_rule(
        ratio=ratio,
        primary=primary,
        total=sum(row.referrals for row in rows),
        max_referrals=experiment.max_referrals,
    )
    return Results(
        experiment,
        rows,
        ratio,
        advice,
        has_revenue=source is not None,
        conversion_stage=conversion_stage,
        winner=max(better)[1] if better and not ratio.mismatch else None,
    )
