"""The strategy lab as ops use it in the admin: strategies and versions entered, an
experiment set up with its arms and started, referrals run through intake (routing
records each one's arm), the per-arm results read, and the winning arm promoted with a
reason, recorded with who and when."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from marketplace.experiments.assignment import arm_of
from marketplace.experiments.lifecycle import ordered_arms, plan_of
from marketplace.experiments.selection import choose_strategy
from marketplace.models import (
    Experiment,
    ExperimentStatus,
    LeadStatus,
    Referral,
    RoutingDecision,
    StrategyPromotion,
    StrategyVersion,
)
from partners.models import Partner
from tests.billing.builders import post, report, schedule
from tests.marketplace.conftest import set_lead_status

pytestmark = pytest.mark.django_db


@pytest.fixture
def ops() -> Any:
    user = get_user_model().objects.create_user("ops-lab", is_staff=True)
    user.groups.add(Group.objects.get(name="ops"))
    return user


@pytest.fixture
def browser(ops: Any) -> Client:
    client = Client()
    client.force_login(ops)
    return client


def _add_strategy(browser: Client, key: str, kind: str, **fields: str) -> StrategyVersion:
    response = browser.post(
        reverse("admin:marketplace_strategy_add"),
        {
            "key": key,
            "name": key.title(),
            "description": "",
            "versions-TOTAL_FORMS": "0",
            "versions-INITIAL_FORMS": "0",
        },
    )
    assert response.status_code == 302, response.content[:2000]
    from marketplace.models import Strategy

    strategy = Strategy.objects.get(key=key)
    response = browser.post(
        reverse("admin:marketplace_strategyversion_add"),
        {
            "strategy": str(strategy.pk),
            "kind": kind,
            "max_partners": fields.get("max_partners", ""),
            "explore": "on",
            "return_penalty": "1",
            "params": "{}",
            "note": "first",
        },
    )
    assert response.status_code == 302, response.context["adminform"].form.errors
    return StrategyVersion.objects.get(strategy=strategy, version=1)


def _action(browser: Client, action: str, experiment: Experiment, **extra: str) -> Any:
    return browser.post(
        reverse("admin:marketplace_experiment_changelist"),
        {"action": action, "_selected_action": [str(experiment.pk)], **extra},
    )


def test_ops_set_up_run_read_and_promote_an_experiment(
    browser: Client,
    ops: Any,
    make_referral: Callable[..., Referral],
    partner: Partner,
) -> None:
    schedule(partner)
    control = _add_strategy(browser, "products", "product_defaults")
    waterfall = _add_strategy(browser, "waterfall", "waterfall", max_partners="2")

    # Editing a version saves a new one; the one opened is unchanged.
    url = reverse("admin:marketplace_strategyversion_change", args=[waterfall.pk])
    response = browser.post(
        url,
        {
            "kind": "waterfall",
            "max_partners": "3",
            "explore": "",
            "return_penalty": "1.5",
            "params": '{"step_timeout_ms": 800}',
            "note": "longer waterfall",
        },
    )
    assert response.status_code == 302
    waterfall.refresh_from_db()
    assert (waterfall.version, waterfall.max_partners) == (1, 2)
    waterfall_v2 = StrategyVersion.objects.get(strategy=waterfall.strategy, version=2)
    assert (waterfall_v2.max_partners, waterfall_v2.explore) == (3, False)
    assert waterfall_v2.params == {"step_timeout_ms": "800"}

    response = browser.post(
        reverse("admin:marketplace_experiment_add"),
        {
            "key": "waterfall-trial",
            "name": "Waterfall trial",
            "hypothesis": "more funded",
            "layer": "routing",
            "layer_share": "1",
            "coverage": "1",
            "primary_metric": "funded",
            "max_referrals": "5000",
            "alpha": "0.05",
            "currency": "CNY",
            "arms-TOTAL_FORMS": "2",
            "arms-INITIAL_FORMS": "0",
            "arms-MIN_NUM_FORMS": "0",
            "arms-MAX_NUM_FORMS": "1000",
            "arms-0-key": "control",
            "arms-0-is_control": "on",
            "arms-0-strategy_version": str(control.pk),
            "arms-0-weight": "1",
            "arms-1-key": "waterfall",
            "arms-1-strategy_version": str(waterfall_v2.pk),
            "arms-1-weight": "1",
        },
    )
    assert response.status_code == 302, response.content[:3000]
    experiment = Experiment.objects.get(key="waterfall-trial")
    assert _action(browser, "start", experiment).status_code == 302
    experiment.refresh_from_db()
    assert experiment.status == ExperimentStatus.RUNNING

    # Live referrals through intake: routing asks choose_strategy and records the arm.
    referrals = [make_referral() for _ in range(12)]
    plan = plan_of(experiment, ordered_arms(experiment))
    arms = {}
    for referral in referrals:
        decision = RoutingDecision.objects.get(referral=referral)
        assert decision.experiment_key == "waterfall-trial"
        assert decision.arm_key == arm_of(plan, str(referral.subject_id))
        assert decision.bucket_version == 1
        arms[referral.pk] = decision.arm_key
    funded = next(r for r in referrals if arms[r.pk] == "waterfall")
    lead = set_lead_status(funded.leads.first(), LeadStatus.DELIVERED)
    for stage in ("accepted", "approved", "funded"):
        post(lead, report(stage, timezone.now()))

    page = browser.get(reverse("admin:marketplace_experiment_change", args=[experiment.pk]))
    assert page.status_code == 200
    html = page.content.decode()
    assert "waterfall (control)" not in html and "control (control)" in html
    assert "Sample ratio" in html and "always-valid" in html
    assert html.lower().count("results per arm") == 1  # once: not as a title and a label
    waterfall_count = sum(arm == "waterfall" for arm in arms.values())
    assert f"<td>{waterfall_count}</td>" in html

    # Promote: a confirmation page, a reason required, then recorded.
    confirm = _action(browser, "promote", experiment)
    assert confirm.status_code == 200 and "reason" in confirm.content.decode()
    arm = experiment.arms.get(key="waterfall")
    refused = _action(browser, "promote", experiment, apply="1", arm=str(arm.pk), reason="")
    assert refused.status_code == 200
    assert not StrategyPromotion.objects.exists()
    done = _action(
        browser, "promote", experiment, apply="1", arm=str(arm.pk), reason="funded rate up"
    )
    assert done.status_code == 302

    promotion = StrategyPromotion.objects.get()
    assert (promotion.strategy_version, promotion.promoted_by, promotion.reason) == (
        waterfall_v2,
        ops,
        "funded rate up",
    )
    assert (promotion.experiment, promotion.arm) == (experiment, arm)
    experiment.refresh_from_db()
    assert experiment.status == ExperimentStatus.PROMOTED
    spec = choose_strategy(subject_id=referrals[0].subject_id, is_sandbox=False).spec
    assert (spec.key, spec.version) == ("waterfall", 2)
    listed = browser.get(reverse("admin:marketplace_strategypromotion_changelist"))
    assert "ops-lab" in listed.content.decode()
