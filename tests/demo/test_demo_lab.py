"""After ``make run`` (``seed_demo``, then ``simulate``) the strategy lab is not empty: two
named strategies, one of them the default, and a running 50/50 experiment whose arms both
got the simulator's traffic, with the dashboard's stored figures for them. ``seed_demo``
may run twice; ``--no-lab`` leaves the lab empty."""

from __future__ import annotations

import io
import socket
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management import call_command
from django.test import Client

from billing.models import ExperimentFigures
from demo.lab import CONTROL_KEY, EXPERIMENT_KEY, TREATMENT_KEY
from marketplace.experiments import strategies
from marketplace.models import (
    Experiment,
    ExperimentStatus,
    RoutingDecision,
    Strategy,
    StrategyPromotion,
    StrategyVersion,
)
from partners.roles import OPS_GROUP


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _seed(port: int, *args: str) -> str:
    out = io.StringIO()
    call_command("seed_demo", "--simulator-url", f"http://127.0.0.1:{port}", *args, stdout=out)
    return out.getvalue()


@pytest.mark.django_db(transaction=True)
def test_seed_demo_runs_an_experiment_whose_arms_both_get_the_simulated_traffic(
    settings: Any, tmp_path: Path
) -> None:
    settings.VAR_DIR = tmp_path
    port = _free_port()
    assert f"experiment {EXPERIMENT_KEY} is running" in _seed(port)
    _seed(port)  # make run again: nothing new, nothing changed

    assert set(Strategy.objects.values_list("key", flat=True)) == {CONTROL_KEY, TREATMENT_KEY}
    assert StrategyVersion.objects.count() == 2
    default = strategies.default_version()
    assert default is not None and default.strategy.key == CONTROL_KEY
    assert StrategyPromotion.objects.get().promoted_by.username == "admin"
    experiment = Experiment.objects.get()
    assert (experiment.key, experiment.status) == (EXPERIMENT_KEY, ExperimentStatus.RUNNING)
    arms = list(experiment.arms.order_by("-is_control"))
    assert [(a.key, a.is_control, a.weight) for a in arms] == [
        ("control", True, 1),
        ("shared", False, 1),
    ]
    assert [a.strategy_version.strategy.key for a in arms] == [CONTROL_KEY, TREATMENT_KEY]

    out = io.StringIO()
    call_command(
        "simulate", "--referrals", "30", "--seed", "5", "--simulator-port", str(port),
        stdout=out, stderr=io.StringIO(),
    )  # fmt: skip

    # Routing's own record of each referral's arm is the oracle for the stored figures.
    decided = Counter(
        RoutingDecision.objects.filter(experiment_key=EXPERIMENT_KEY).values_list(
            "arm_key", flat=True
        )
    )
    assert decided["control"] > 0 and decided["shared"] > 0, out.getvalue()
    stored = ExperimentFigures.objects.get(experiment=experiment)
    assert {arm["key"]: arm["referrals"] for arm in stored.arms} == {
        "control": decided["control"],
        "shared": decided["shared"],
    }

    ops = get_user_model().objects.create_user("ops-demo", password="pw-123456!", is_staff=True)
    ops.groups.add(Group.objects.get(name=OPS_GROUP))
    client = Client()
    client.force_login(ops)
    page = client.get("/admin/dashboard/")
    assert page.status_code == 200
    shown = page.context["experiments"]
    assert [e["key"] for e in shown] == [EXPERIMENT_KEY]
    assert [(a["key"], a["figures"] is not None) for a in shown[0]["arms"]] == [
        ("control", True),
        ("shared", True),
    ]


@pytest.mark.django_db
def test_seed_demo_without_the_lab_leaves_it_empty(settings: Any, tmp_path: Path) -> None:
    settings.VAR_DIR = tmp_path
    _seed(_free_port(), "--no-lab")
    assert not Strategy.objects.exists()
    assert not Experiment.objects.exists()
