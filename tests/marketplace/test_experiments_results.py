"""Per-arm results read from routing's decision records: funnel counts, conversion and
revenue per referral, only live referrals of the current bucket version, and the
sample-ratio check on what routing actually did."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import call_command
from django.db.models import Sum
from django.utils import timezone

from billing.models import Charge
from marketplace.experiments import lifecycle, strategies
from marketplace.experiments.assignment import arm_of
from marketplace.experiments.lifecycle import ordered_arms, plan_of
from marketplace.experiments.results import results
from marketplace.models import (
    Arm,
    Experiment,
    ExperimentStatus,
    LeadStatus,
    Referral,
    RoutingDecision,
    Strategy,
)
from marketplace.strategy_spec import StrategyKind
from partners.models import Partner
from tests.billing.builders import post, report, schedule
from tests.marketplace.conftest import set_lead_status

pytestmark = pytest.mark.django_db


def _started(key: str = "exp") -> Experiment:
    experiment = Experiment.objects.create(key=key, name=key, max_referrals=1000, layer=key)
    for arm_key, kind in (
        ("control", StrategyKind.PRODUCT_DEFAULTS),
        ("waterfall", StrategyKind.WATERFALL),
    ):
        strategy = Strategy.objects.create(key=f"{key}-{arm_key}", name=arm_key)
        Arm.objects.create(
            experiment=experiment,
            key=arm_key,
            is_control=arm_key == "control",
            strategy_version=strategies.create_version(strategy=strategy, kind=kind),
        )
    return lifecycle.start(experiment_id=experiment.pk)


def _decide(referral: Referral, experiment: Experiment, arm: str, bucket: int = 1) -> None:
    """The decision record routing writes for a referral routed by this arm."""
    RoutingDecision.objects.update_or_create(
        referral=referral,
        defaults={
            "strategy_key": f"{experiment.key}-{arm}",
            "strategy_version": 1,
            "strategy_kind": "waterfall",
            "explore": True,
            "experiment_key": experiment.key,
            "arm_key": arm,
            "bucket_version": bucket,
            "segment": "test",
        },
    )


def _advance(referral: Referral, partner: Partner, stages: list[str]) -> None:
    lead = set_lead_status(referral.leads.get(partner=partner), LeadStatus.DELIVERED)
    at = timezone.now()
    for i, stage in enumerate(stages):
        post(lead, report(stage, at + timedelta(minutes=i)))


def test_funnel_and_revenue_per_arm_match_the_records(
    make_referral: Callable[..., Referral], partner: Partner
) -> None:
    schedule(partner)  # CPL 40 on accept, CPA 250 on approval, CPF 3% of the principal
    experiment = _started()
    plan = plan_of(experiment, ordered_arms(experiment))
    referrals = [make_referral() for _ in range(16)]
    by_arm: dict[str, list[Referral]] = {"control": [], "waterfall": []}
    for referral in referrals:
        arm = arm_of(plan, str(referral.subject_id))
        assert arm is not None
        _decide(referral, experiment, arm)
        by_arm[arm].append(referral)
    assert by_arm["control"] and by_arm["waterfall"]
    _advance(by_arm["waterfall"][0], partner, ["accepted", "approved", "funded"])
    _advance(by_arm["control"][0], partner, ["accepted"])
    # Not counted: a sandbox referral, and one decided under an earlier bucket version.
    sandbox = make_referral(is_sandbox=True)
    _decide(sandbox, experiment, "waterfall")
    _advance(sandbox, partner, ["accepted"])
    old = make_referral()
    _decide(old, experiment, "waterfall", bucket=0)

    found = {arm.key: arm for arm in results(experiment).arms}

    for key, members in by_arm.items():
        arm = found[key]
        assert arm.referrals == len(members)
        assert arm.funnel["matched"] == len(members)  # the partner's product fits them all
        assert arm.funnel["delivered"] == 1
        booked = Charge.objects.filter(lead__referral__in=members).aggregate(s=Sum("amount"))["s"]
        assert arm.revenue is not None
        assert Decimal(str(arm.revenue.mean)).quantize(Decimal("0.01")) == (
            booked / len(members)
        ).quantize(Decimal("0.01"))
    assert [found["waterfall"].funnel[s] for s in ("accepted", "approved", "funded")] == [1, 1, 1]
    assert [found["control"].funnel[s] for s in ("accepted", "approved", "funded")] == [1, 0, 0]
    assert found["waterfall"].conversion_lift is not None


def test_results_flag_a_split_routing_broke(make_referral: Callable[..., Referral]) -> None:
    experiment = _started()
    for _ in range(60):
        _decide(make_referral(), experiment, "control")  # every referral in one arm
    found = results(experiment)
    assert found.ratio.mismatch
    assert found.advice.stop and "mismatch" in found.advice.reason
    assert found.winner is None  # no arm wins on a broken split


def test_review_command_stops_what_the_stop_rule_says_to(
    make_referral: Callable[..., Referral],
) -> None:
    broken = _started("broken")
    healthy = _started("healthy")
    for _ in range(60):
        _decide(make_referral(), broken, "control")
    out = StringIO()
    call_command("review_experiments", "--dry-run", stdout=out)
    assert "broken: would stop: sample ratio mismatch" in out.getvalue()
    broken.refresh_from_db()
    assert broken.status == ExperimentStatus.RUNNING

    call_command("review_experiments", stdout=StringIO())
    broken.refresh_from_db()
    healthy.refresh_from_db()
    assert broken.status == ExperimentStatus.STOPPED
    assert broken.stop_reason.startswith("stop rule: sample ratio mismatch")
    assert healthy.status == ExperimentStatus.RUNNING
