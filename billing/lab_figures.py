"""The strategy lab's per-arm results kept for the dashboard (``ExperimentFigures``).

The lab computes an experiment's results from its raw rows (``marketplace.experiments.
results``: routing decisions, leads, events, and revenue from the charge ledger), which is
right for one experiment's page and wrong for a dashboard that must stay fast on a
million leads. So beat runs :func:`refresh` every minute: it asks the lab for the results
of every running experiment and stores them as they are, and the dashboard reads those
rows. Nothing is recomputed here: the figures are the lab's, a minute old at most.
"""

from __future__ import annotations

import math
from decimal import Decimal
from typing import Any

from django.db import transaction
from django.utils import timezone

from billing.models import ExperimentFigures
from marketplace.experiments.results import STAGES, ArmResult, Results, results
from marketplace.experiments.sequential import Interval
from marketplace.models import Experiment, ExperimentStatus


def _interval(interval: Interval | None) -> list[float | None] | None:
    """[estimate, low, high]; an infinite end (the lab's "not enough data") as null."""
    if interval is None:
        return None
    return [
        interval.estimate,
        *(v if math.isfinite(v) else None for v in (interval.low, interval.high)),
    ]


def _arm(arm: ArmResult) -> dict[str, Any]:
    return {
        "key": arm.key,
        "is_control": arm.is_control,
        "strategy": arm.strategy,
        "weight": str(Decimal(arm.weight).normalize()),
        "referrals": arm.referrals,
        "funnel": {stage: arm.funnel.get(stage, 0) for stage in STAGES},
        "conversion": _interval(arm.conversion),
        "conversion_lift": _interval(arm.conversion_lift),
        "revenue_per_referral": None if arm.revenue is None else arm.revenue.mean,
        "revenue": _interval(arm.revenue_interval),
        "revenue_lift": _interval(arm.revenue_lift),
    }


def figures(found: Results) -> dict[str, Any]:
    """The stored form of the lab's results (a plain function over them)."""
    return {
        "bucket_version": found.experiment.bucket_version,
        "referrals": found.total,
        "conversion_stage": found.conversion_stage,
        "currency": found.experiment.currency,
        "alpha": found.experiment.alpha,
        "sample_ratio_p": found.ratio.p_value,
        "sample_ratio_mismatch": found.ratio.mismatch,
        "stop_advice": found.advice.reason if found.advice.stop else "",
        "winner": found.winner or "",
        "arms": [_arm(arm) for arm in found.arms],
    }


def refresh() -> int:
    """The figures of every running experiment from the lab's results; the rows of
    experiments no longer running are dropped. Returns how many were written."""
    now = timezone.now()
    written = 0
    for experiment in Experiment.objects.filter(status=ExperimentStatus.RUNNING).order_by("pk"):
        values = figures(results(experiment))
        ExperimentFigures.objects.update_or_create(
            experiment=experiment, defaults={**values, "computed_at": now}
        )
        written += 1
    with transaction.atomic():
        ExperimentFigures.objects.exclude(experiment__status=ExperimentStatus.RUNNING).delete()
    return written
