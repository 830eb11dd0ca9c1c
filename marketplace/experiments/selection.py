"""The strategy a referral is routed by: its subject's experiment arm, else the default.

Experiments apply to live traffic only: a sandbox referral (a partner's or source's
integration test) is routed by the default strategy, so test traffic never enters or
skews an experiment's arms.
"""

from __future__ import annotations

import uuid
from itertools import groupby

from marketplace.experiments import strategies
from marketplace.experiments.assignment import Plan, assign
from marketplace.experiments.lifecycle import plan_of
from marketplace.models import Arm, ExperimentStatus
from marketplace.strategy_spec import StrategyChoice
from partners import catalogue_cache


def running_plans() -> list[tuple[Plan, dict[str, Arm]]]:
    """Every running experiment's plan and its arms by key (one query)."""
    arms = (
        Arm.objects.filter(experiment__status=ExperimentStatus.RUNNING)
        .select_related("experiment", "strategy_version__strategy")
        .order_by("experiment_id", "-is_control", "key")
    )
    plans = []
    for _, group in groupby(arms, key=lambda arm: arm.experiment_id):
        members = list(group)
        plans.append((plan_of(members[0].experiment, members), {a.key: a for a in members}))
    return plans


def choose_strategy(
    *, subject_id: uuid.UUID, is_sandbox: bool, version: int | None = None
) -> StrategyChoice:
    """The strategy for a referral of this subject: the arm of the running experiment its
    vault id hashes into (live traffic only), else the promoted default strategy's
    version, else DEFAULT_STRATEGY (product settings decide). Reads only: routing's
    decision record stores the choice, and the lab's results read it from there. Given the
    catalogue ``version`` the caller read, the running experiments and the default come
    from memory (cached per version: any change to strategies or experiments moves it)."""
    if not is_sandbox:
        plans = catalogue_cache.cached("running-plans", version=version, compute=running_plans)
        found = assign([plan for plan, _ in plans], str(subject_id))
        if found is not None:
            plan, arm_key = found
            arm = next(arms[arm_key] for p, arms in plans if p.key == plan.key)
            return StrategyChoice(
                spec=strategies.spec_of(arm.strategy_version),
                experiment_key=plan.key,
                arm_key=arm_key,
                bucket_version=plan.bucket_version,
            )
    return StrategyChoice(
        spec=catalogue_cache.cached(
            "default-strategy", version=version, compute=strategies.default_spec
        )
    )
