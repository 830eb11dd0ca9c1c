"""The stop rule on a schedule: every running experiment's results are read and those the
rule says to stop are stopped, with its reason and the time (``lifecycle.stop``).
Promotion stays a person's decision: a stopped experiment waits in the admin with its
results and the winning arm, if any.

Safe to run twice or concurrently: ``lifecycle.stop`` locks the row and does nothing to
an experiment that is no longer running, so the first reason and time are the ones kept.
"""

from __future__ import annotations

from dataclasses import dataclass

from marketplace.experiments import lifecycle
from marketplace.experiments.results import results
from marketplace.models import Experiment, ExperimentStatus

STOP_REASON_PREFIX = "stop rule: "


@dataclass(frozen=True, slots=True)
class Review:
    key: str
    referrals: int
    stop: bool  # the rule says stop
    reason: str  # why, empty when it runs on
    stopped: bool  # this review stopped it (False on a dry run or when already stopped)


def review_running(*, dry_run: bool = False) -> list[Review]:
    """Apply the stop rule to every running experiment; ``dry_run`` only reports."""
    reviews: list[Review] = []
    for experiment in Experiment.objects.filter(status=ExperimentStatus.RUNNING).order_by("key"):
        found = results(experiment)
        stopped = False  # another review, or a person, may have stopped it meanwhile
        if found.advice.stop and not dry_run:
            _, stopped = lifecycle.stop_running(
                experiment_id=experiment.pk, reason=STOP_REASON_PREFIX + found.advice.reason
            )
        reviews.append(
            Review(experiment.key, found.total, found.advice.stop, found.advice.reason, stopped)
        )
    return reviews
