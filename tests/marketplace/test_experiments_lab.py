"""Strategies, versions, the default's promotions and experiments' lives, and
``choose_strategy`` (what routing asks)."""

from __future__ import annotations

import uuid
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.db import IntegrityError, transaction

from marketplace.experiments import lifecycle, strategies
from marketplace.experiments.assignment import arm_of
from marketplace.experiments.lifecycle import ExperimentError, ordered_arms, plan_of
from marketplace.experiments.selection import choose_strategy
from marketplace.models import (
    Arm,
    Experiment,
    ExperimentStatus,
    Strategy,
    StrategyPromotion,
    StrategyVersion,
)
from marketplace.strategy_spec import DEFAULT_STRATEGY, StrategyKind

pytestmark = pytest.mark.django_db


def _version(key: str, kind: str = StrategyKind.SHARED_BROADCAST, **kw: object) -> StrategyVersion:
    strategy, _ = Strategy.objects.get_or_create(key=key, defaults={"name": key.title()})
    return strategies.create_version(strategy=strategy, kind=kind, **kw)  # type: ignore[arg-type]


def _experiment(key: str = "broadcast-vs-exclusive", **kw: object) -> Experiment:
    experiment = Experiment.objects.create(key=key, name=key, **kw)
    Arm.objects.create(
        experiment=experiment,
        key="control",
        is_control=True,
        strategy_version=_version("products", StrategyKind.PRODUCT_DEFAULTS),
    )
    Arm.objects.create(
        experiment=experiment,
        key="exclusive",
        strategy_version=_version("exclusive", StrategyKind.EXCLUSIVE_BEST_VALUE),
    )
    return experiment


@pytest.fixture
def user() -> object:
    return get_user_model().objects.create_user("ops-person", is_staff=True)


def test_versions_are_numbered_and_earlier_ones_never_change() -> None:
    first = _version("broadcast", max_partners=3)
    second = _version("broadcast", max_partners=5, explore=False)
    first.refresh_from_db()
    assert (first.version, first.max_partners) == (1, 3)
    assert (second.version, second.max_partners, second.explore) == (2, 5, False)
    with pytest.raises(ValueError, match="kind"):
        _version("broadcast", kind="nonsense")


def test_without_a_promotion_routing_gets_the_built_in_default() -> None:
    _version("broadcast")
    choice = choose_strategy(subject_id=uuid.uuid4(), is_sandbox=False)
    assert choice.spec == DEFAULT_STRATEGY
    assert choice.experiment_key is None


def test_promotion_sets_the_default_and_records_who_when_and_why(user: object) -> None:
    old = _version("broadcast", max_partners=3)
    new = _version("exclusive", StrategyKind.EXCLUSIVE_BEST_VALUE, return_penalty=Decimal("2"))
    strategies.promote_version(version=old, user=user, reason="first default")  # type: ignore[arg-type]
    promotion = strategies.promote_version(version=new, user=user, reason="better revenue")  # type: ignore[arg-type]

    assert list(StrategyVersion.objects.filter(is_default=True)) == [new]
    assert (promotion.previous, promotion.promoted_by, promotion.reason) == (
        old,
        user,
        "better revenue",
    )
    assert promotion.promoted_at is not None
    assert StrategyPromotion.objects.count() == 2
    spec = choose_strategy(subject_id=uuid.uuid4(), is_sandbox=True).spec
    assert (spec.key, spec.version, spec.kind, spec.return_penalty) == (
        "exclusive",
        1,
        StrategyKind.EXCLUSIVE_BEST_VALUE,
        Decimal("2.000"),
    )
    with pytest.raises(ValueError, match="reason"):
        strategies.promote_version(version=old, user=user, reason="  ")  # type: ignore[arg-type]


def test_the_database_allows_one_default_only() -> None:
    a, b = _version("a"), _version("b")
    StrategyVersion.objects.filter(pk=a.pk).update(is_default=True)
    with pytest.raises(IntegrityError), transaction.atomic():
        StrategyVersion.objects.filter(pk=b.pk).update(is_default=True)


def test_a_running_experiment_assigns_live_subjects_by_their_hash_and_never_sandbox() -> None:
    experiment = lifecycle.start(experiment_id=_experiment().pk)
    plan = plan_of(experiment, ordered_arms(experiment))
    seen = set()
    for i in range(200):
        subject = uuid.UUID(int=i * 2654435761)
        choice = choose_strategy(subject_id=subject, is_sandbox=False)
        expected_arm = arm_of(plan, str(subject))
        assert choice.arm_key == expected_arm
        assert choice.experiment_key == experiment.key
        assert choice.bucket_version == 1
        assert choice.spec.key == ("products" if expected_arm == "control" else "exclusive")
        assert choose_strategy(subject_id=subject, is_sandbox=False) == choice  # stays
        assert choose_strategy(subject_id=subject, is_sandbox=True).experiment_key is None
        seen.add(choice.arm_key)
    assert seen == {"control", "exclusive"}


def test_two_experiments_of_one_layer_get_disjoint_ranges() -> None:
    one = lifecycle.start(experiment_id=_experiment("one", layer_share=Decimal("0.5")).pk)
    two = lifecycle.start(experiment_id=_experiment("two", layer_share=Decimal("0.5")).pk)
    three = _experiment("three", layer_share=Decimal("0.2"))
    assert (one.namespace_start, one.namespace_end) == (Decimal("0"), Decimal("0.5"))
    assert (two.namespace_start, two.namespace_end) == (Decimal("0.5"), Decimal("1"))
    with pytest.raises(ExperimentError, match="no free"):
        lifecycle.start(experiment_id=three.pk)
    chosen = {
        choose_strategy(subject_id=uuid.UUID(int=i * 40503), is_sandbox=False).experiment_key
        for i in range(300)
    }
    assert chosen == {"one", "two"}
    lifecycle.stop(experiment_id=one.pk, reason="done")
    three = lifecycle.start(experiment_id=three.pk)
    assert (three.namespace_start, three.namespace_end) == (Decimal("0"), Decimal("0.2"))


def test_an_experiment_needs_one_control_and_two_arms() -> None:
    experiment = Experiment.objects.create(key="lonely", name="lonely")
    Arm.objects.create(
        experiment=experiment, key="only", is_control=True, strategy_version=_version("x")
    )
    with pytest.raises(ExperimentError, match="two arms"):
        lifecycle.start(experiment_id=experiment.pk)
    Arm.objects.create(experiment=experiment, key="other", strategy_version=_version("y"))
    Arm.objects.filter(experiment=experiment).update(is_control=False)
    with pytest.raises(ExperimentError, match="control"):
        lifecycle.start(experiment_id=experiment.pk)


def test_restart_takes_a_new_bucket_version_that_reshuffles(user: object) -> None:
    experiment = lifecycle.start(experiment_id=_experiment().pk)
    subjects = [uuid.UUID(int=i * 7777777) for i in range(400)]
    before = [choose_strategy(subject_id=s, is_sandbox=False).arm_key for s in subjects]
    restarted = lifecycle.restart(experiment_id=experiment.pk)
    assert (restarted.bucket_version, restarted.status) == (2, ExperimentStatus.RUNNING)
    after = [choose_strategy(subject_id=s, is_sandbox=False) for s in subjects]
    assert {c.bucket_version for c in after} == {2}
    moved = sum(b != a.arm_key for b, a in zip(before, after, strict=True))
    assert 120 < moved < 280


def test_promoting_an_arm_makes_its_version_the_default_and_ends_the_experiment(
    user: object,
) -> None:
    experiment = lifecycle.start(experiment_id=_experiment().pk)
    arm = experiment.arms.get(key="exclusive")
    promotion = lifecycle.promote_arm(
        experiment_id=experiment.pk,
        arm_id=arm.pk,
        user=user,
        reason="wins on revenue",  # type: ignore[arg-type]
    )
    experiment.refresh_from_db()
    assert experiment.status == ExperimentStatus.PROMOTED
    assert experiment.stopped_at is not None
    assert (promotion.experiment, promotion.arm, promotion.promoted_by) == (experiment, arm, user)
    choice = choose_strategy(subject_id=uuid.uuid4(), is_sandbox=False)
    assert (choice.experiment_key, choice.spec.key) == (None, "exclusive")
    with pytest.raises(ExperimentError, match="promoted"):
        lifecycle.promote_arm(experiment_id=experiment.pk, arm_id=arm.pk, user=user, reason="again")  # type: ignore[arg-type]
