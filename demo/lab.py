"""The demo's strategy lab: two named strategies (the first promoted to the platform's
default) and one running experiment that splits live referrals 50/50 between them, so that
after ``make run`` the lab's experiment page has per-arm funnels and intervals and the
dashboard has the arms side by side.

Everything goes through the lab's own functions (``marketplace.experiments``), as an ops
user's clicks in the admin would. Made once: a second run finds them by key and changes
nothing, so a default someone promoted since, or an experiment they stopped, stays so.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.contrib.auth.models import User
from django.db import transaction

from marketplace.experiments import lifecycle, strategies
from marketplace.experiments.lifecycle import ArmSpec, ExperimentError
from marketplace.models import (
    Experiment,
    ExperimentStatus,
    PrimaryMetric,
    Strategy,
    StrategyVersion,
)
from marketplace.strategy_spec import StrategyKind

CONTROL_KEY = "exclusive-best-value"
TREATMENT_KEY = "shared-broadcast-2"
EXPERIMENT_KEY = "exclusive-vs-shared"


@dataclass(frozen=True)
class DemoLab:
    experiment: Experiment
    promoted: bool  # this run made the control's version the default
    not_started: str  # why the experiment is left a draft (another one holds its layer)


def _first_version(
    *, key: str, name: str, description: str, kind: str, max_partners: int | None, user: User
) -> StrategyVersion:
    strategy = Strategy.objects.filter(key=key).first()
    if strategy is None:
        strategy = strategies.create_strategy(key=key, name=name, description=description)
    version = strategy.versions.order_by("version").first()
    if version is None:
        version = strategies.create_version(
            strategy=strategy,
            kind=kind,
            max_partners=max_partners,
            note="demo data (seed_demo)",
            user=user,
        )
    return version


def seed_lab(*, user: User) -> DemoLab:
    """The demo strategies, the default and the experiment, running; ``user`` (the demo
    admin) is recorded as who created the versions and promoted the default."""
    with transaction.atomic():
        control = _first_version(
            key=CONTROL_KEY,
            name="Exclusive highest value",
            description="Each lead to the one partner with the highest expected value.",
            kind=StrategyKind.EXCLUSIVE_BEST_VALUE,
            max_partners=None,
            user=user,
        )
        treatment = _first_version(
            key=TREATMENT_KEY,
            name="Shared broadcast to 2",
            description="Each lead shared with the two best partners by expected value.",
            kind=StrategyKind.SHARED_BROADCAST,
            max_partners=2,
            user=user,
        )
        promoted = False
        if strategies.default_version() is None:
            strategies.promote_version(
                version=control, user=user, reason="Demo data: the platform's starting default"
            )
            promoted = True
        experiment = Experiment.objects.filter(key=EXPERIMENT_KEY).first()
        if experiment is None:
            experiment = lifecycle.create_experiment(
                key=EXPERIMENT_KEY,
                name="Exclusive or shared with two",
                hypothesis="Sharing each lead with the two best partners earns more per "
                "referral than selling it exclusively to the best one.",
                primary_metric=PrimaryMetric.REVENUE,
                arms=[
                    ArmSpec(key="control", strategy_version=control, is_control=True),
                    ArmSpec(key="shared", strategy_version=treatment),
                ],
            )
    not_started = ""
    if experiment.status == ExperimentStatus.DRAFT:
        try:
            experiment = lifecycle.start(experiment_id=experiment.pk)
        except ExperimentError as exc:  # e.g. an experiment of the user's holds the layer
            not_started = str(exc)
    return DemoLab(experiment=experiment, promoted=promoted, not_started=not_started)
