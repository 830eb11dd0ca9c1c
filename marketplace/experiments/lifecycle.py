"""An experiment's life: draft -> running -> stopped -> promoted (or stopped and left).

State changes lock the experiment's row and are no-ops when already done. While it runs,
its assignment settings (layer range, coverage, arms, weights, bucket version) are frozen:
``restart`` is the one way to change who is in which arm, by a new bucket version.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone

from marketplace.experiments import strategies
from marketplace.experiments.assignment import Plan, allocate_range
from marketplace.models import (
    Arm,
    Experiment,
    ExperimentStatus,
    PrimaryMetric,
    StrategyPromotion,
    StrategyVersion,
)


class ExperimentError(ValueError):
    """The experiment cannot make this change (its message says why)."""


def plan_of(experiment: Experiment, arms: list[Arm]) -> Plan:
    if experiment.namespace_start is None or experiment.namespace_end is None:
        raise ExperimentError(f"{experiment.key} has no layer range (never started)")
    return Plan(
        key=experiment.key,
        bucket_version=experiment.bucket_version,
        layer=experiment.layer,
        namespace=(float(experiment.namespace_start), float(experiment.namespace_end)),
        coverage=float(experiment.coverage),
        weights=tuple(float(arm.weight) for arm in arms),
        arms=tuple(arm.key for arm in arms),
        started_at=experiment.started_at,
    )


def ordered_arms(experiment: Experiment) -> list[Arm]:
    """Control first, then by key: the order arms are bucketed in."""
    return list(
        experiment.arms.select_related("strategy_version__strategy").order_by("-is_control", "key")
    )


def _check_arms(arms: list[Arm]) -> None:
    if len(arms) < 2:
        raise ExperimentError("an experiment needs at least two arms")
    if sum(arm.is_control for arm in arms) != 1:
        raise ExperimentError("exactly one arm must be the control")
    if any(arm.weight <= 0 for arm in arms):
        raise ExperimentError("every arm needs a positive weight")


@dataclass(frozen=True, slots=True)
class ArmSpec:
    key: str
    strategy_version: StrategyVersion
    weight: Decimal = Decimal("1")
    is_control: bool = False


def create_experiment(
    *,
    key: str,
    name: str,
    arms: Sequence[ArmSpec],
    hypothesis: str = "",
    layer: str = "routing",
    layer_share: Decimal = Decimal("1"),
    coverage: Decimal = Decimal("1"),
    primary_metric: str = PrimaryMetric.FUNDED,
    max_referrals: int = 20000,
    currency: str = "CNY",
) -> Experiment:
    """A draft experiment with its arms, checked as the admin's forms check them (field
    validators, unique keys) and as ``start`` would (one control, positive weights), so a
    bad one is refused here rather than at its start. ``start`` runs it."""
    with transaction.atomic():
        experiment = Experiment(
            key=key,
            name=name,
            hypothesis=hypothesis,
            layer=layer,
            layer_share=layer_share,
            coverage=coverage,
            primary_metric=primary_metric,
            max_referrals=max_referrals,
            currency=currency,
        )
        experiment.full_clean()
        experiment.save()
        built = [
            Arm(
                experiment=experiment,
                key=spec.key,
                is_control=spec.is_control,
                strategy_version=spec.strategy_version,
                weight=spec.weight,
            )
            for spec in arms
        ]
        _check_arms(built)
        for arm in built:
            arm.full_clean()  # also the unique arm key, against the arms saved before it
            arm.save()
        return experiment


def _locked(experiment_id: int) -> Experiment:
    return Experiment.objects.select_for_update().get(pk=experiment_id)


def start(*, experiment_id: int) -> Experiment:
    """Give the experiment a free range of its layer and start assigning live referrals."""
    with transaction.atomic():
        experiment = _locked(experiment_id)
        if experiment.status == ExperimentStatus.RUNNING:
            return experiment
        if experiment.status != ExperimentStatus.DRAFT:
            raise ExperimentError(f"a {experiment.status} experiment cannot start again")
        _check_arms(ordered_arms(experiment))
        # Running experiments of the layer are locked too: two starts in one layer take
        # their ranges one after the other.
        taken = [
            (other.namespace_start, other.namespace_end)
            for other in Experiment.objects.select_for_update()
            .filter(layer=experiment.layer, status=ExperimentStatus.RUNNING)
            .exclude(pk=experiment.pk)
            if other.namespace_start is not None and other.namespace_end is not None
        ]
        try:
            low, high = allocate_range(share=experiment.layer_share, taken=taken)
        except ValueError as exc:
            raise ExperimentError(str(exc)) from exc
        experiment.namespace_start, experiment.namespace_end = low, high
        experiment.status = ExperimentStatus.RUNNING
        experiment.started_at = timezone.now()
        experiment.save(update_fields=["namespace_start", "namespace_end", "status", "started_at"])
        return experiment


def stop(*, experiment_id: int, reason: str) -> Experiment:
    """Stop assigning: its referrals go back to the default strategy. Its layer range is
    freed for other experiments."""
    return stop_running(experiment_id=experiment_id, reason=reason)[0]


def stop_running(*, experiment_id: int, reason: str) -> tuple[Experiment, bool]:
    """``stop``, also saying whether this call stopped it (False: it was not running, and
    whoever stopped it first keeps their reason and time)."""
    with transaction.atomic():
        experiment = _locked(experiment_id)
        if experiment.status != ExperimentStatus.RUNNING:
            return experiment, False
        experiment.status = ExperimentStatus.STOPPED
        experiment.stopped_at = timezone.now()
        experiment.stop_reason = reason[:200]
        experiment.save(update_fields=["status", "stopped_at", "stop_reason"])
        return experiment, True


def restart(*, experiment_id: int) -> Experiment:
    """Restart a broken experiment cleanly: a new bucket version reshuffles every subject
    and its results count from now (only decisions of the new bucket version count)."""
    with transaction.atomic():
        experiment = _locked(experiment_id)
        if experiment.status == ExperimentStatus.PROMOTED:
            raise ExperimentError("a promoted experiment is finished")
        experiment.bucket_version += 1
        experiment.status = ExperimentStatus.DRAFT
        experiment.started_at = None
        experiment.stopped_at = None
        experiment.stop_reason = ""
        experiment.save(
            update_fields=["bucket_version", "status", "started_at", "stopped_at", "stop_reason"]
        )
        return start(experiment_id=experiment_id)


def promote_arm(*, experiment_id: int, arm_id: int, user: User, reason: str) -> StrategyPromotion:
    """Make the arm's strategy version the default strategy (recorded with who, when and
    why) and mark the experiment promoted; a running experiment stops first."""
    with transaction.atomic():
        experiment = _locked(experiment_id)
        if experiment.status not in (ExperimentStatus.RUNNING, ExperimentStatus.STOPPED):
            raise ExperimentError(f"a {experiment.status} experiment cannot be promoted")
        try:
            arm = experiment.arms.select_related("strategy_version__strategy").get(pk=arm_id)
        except Arm.DoesNotExist as exc:
            raise ExperimentError("that arm is not one of this experiment's") from exc
        promotion = strategies.promote_version(
            version=arm.strategy_version,
            user=user,
            reason=reason,
            experiment=experiment,
            arm=arm,
        )
        experiment.status = ExperimentStatus.PROMOTED
        experiment.stopped_at = experiment.stopped_at or timezone.now()
        experiment.stop_reason = experiment.stop_reason or f"promoted arm {arm.key}"
        experiment.save(update_fields=["status", "stopped_at", "stop_reason"])
        return promotion
