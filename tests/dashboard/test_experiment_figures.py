"""The dashboard shows each running experiment's arms side by side with the strategy lab's
own figures (funnel, conversion and revenue per referral with their always-valid
intervals), stored every minute from the lab's results (``billing.lab_figures``): the page
reads that small table, never an experiment's raw rows."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
from django.db import connection
from django.db.models import Sum
from django.test.utils import CaptureQueriesContext

from billing import tasks
from billing.models import Charge, ExperimentFigures
from marketplace.experiments import lifecycle
from marketplace.experiments.assignment import arm_of
from marketplace.experiments.lifecycle import ordered_arms, plan_of
from marketplace.experiments.results import results
from marketplace.models import Experiment, Referral
from partners.models import Partner
from partners.roles import OPS_GROUP
from tests.billing.builders import schedule
from tests.dashboard.test_dashboard_page import URL, client_for, staff
from tests.marketplace.conftest import make_referral, partner
from tests.marketplace.test_experiments_results import _advance, _decide, _started

# The marketplace tests' fixtures, used here: referrals through intake, and a partner
# whose product fits them.
__all__ = ["make_referral", "partner"]

pytestmark = pytest.mark.django_db


def _split(
    experiment: Experiment, make_referral: Callable[..., Referral], n: int
) -> dict[str, list[Referral]]:
    plan = plan_of(experiment, ordered_arms(experiment))
    by_arm: dict[str, list[Referral]] = {"control": [], "waterfall": []}
    for _ in range(n):
        referral = make_referral()
        arm = arm_of(plan, str(referral.subject_id))
        assert arm is not None
        _decide(referral, experiment, arm)
        by_arm[arm].append(referral)
    return by_arm


def _arms(response: Any) -> dict[str, dict[str, Any]]:
    (experiment,) = response.context["experiments"]
    return {arm["key"]: arm for arm in experiment["arms"]}


def test_each_arm_shows_the_labs_funnel_conversion_and_revenue_per_referral(
    make_referral: Callable[..., Referral], partner: Partner
) -> None:
    schedule(partner)  # CPL 40 on accept, CPA 250 on approval, CPF 3% of the principal
    experiment = _started()
    by_arm = _split(experiment, make_referral, 16)
    assert by_arm["control"] and by_arm["waterfall"]
    _advance(by_arm["waterfall"][0], partner, ["accepted", "approved", "funded"])
    _advance(by_arm["control"][0], partner, ["accepted"])

    assert tasks.refresh_experiment_figures() == 1
    response = client_for(staff("ops", OPS_GROUP)).get(URL)

    arms = _arms(response)
    lab = {arm.key: arm for arm in results(experiment).arms}
    for key, members in by_arm.items():
        figures = arms[key]["figures"]
        assert figures["referrals"] == len(members) == lab[key].referrals
        counts = {stage: count for stage, count, _ in figures["funnel"]}
        assert counts["matched"] == len(members)  # the partner's product fits them all
        assert counts["delivered"] == 1
        # Revenue per referral: what the charge ledger booked for the arm's referrals.
        booked = Charge.objects.filter(lead__referral__in=members).aggregate(s=Sum("amount"))["s"]
        per_referral = (booked / len(members)).quantize(Decimal("0.01"))
        assert figures["revenue_per_referral"] == f"{per_referral:,.2f}"
    waterfall = {s: c for s, c, _ in arms["waterfall"]["figures"]["funnel"]}
    control = {s: c for s, c, _ in arms["control"]["figures"]["funnel"]}
    assert [waterfall[s] for s in ("accepted", "approved", "funded")] == [1, 1, 1]
    assert [control[s] for s in ("accepted", "approved", "funded")] == [1, 0, 0]
    assert arms["control"]["figures"]["conversion_lift"] == "control"
    # The intervals are the lab's, shown as its experiment page shows them.
    conversion = lab["waterfall"].conversion
    assert conversion is not None
    shown = arms["waterfall"]["figures"]["conversion"]
    assert shown.startswith(f"{conversion.estimate:.1%}")
    body = response.content.decode()
    assert 'id="experiment-exp"' in body
    assert "Revenue / referral (CNY)" in body and "Funded conversion" in body
    assert "always-valid confidence sequences" in body


def test_the_page_reads_the_stored_figures_not_the_experiments_rows(
    make_referral: Callable[..., Referral], partner: Partner
) -> None:
    experiment = _started()
    _split(experiment, make_referral, 6)
    client = client_for(staff("ops", OPS_GROUP))
    before = client.get(URL)
    assert all(arm["figures"] is None for arm in _arms(before).values())
    assert "Figures not computed yet" in before.content.decode()

    tasks.refresh_experiment_figures()
    with CaptureQueriesContext(connection) as few:
        client.get(URL)
    _split(experiment, make_referral, 30)  # more traffic, not refreshed yet
    with CaptureQueriesContext(connection) as more:
        shown = client.get(URL)

    assert sum(arm["figures"]["referrals"] for arm in _arms(shown).values()) == 6
    assert len(more.captured_queries) == len(few.captured_queries)
    for query in more.captured_queries:
        sql = query["sql"].lower()
        assert "routingdecision" not in sql and "marketplace_lead" not in sql, sql

    tasks.refresh_experiment_figures()
    assert sum(a["figures"]["referrals"] for a in _arms(client.get(URL)).values()) == 36


def test_a_restart_hides_the_old_figures_and_a_stop_drops_them(
    make_referral: Callable[..., Referral], partner: Partner
) -> None:
    experiment = _started()
    _split(experiment, make_referral, 4)
    tasks.refresh_experiment_figures()
    client = client_for(staff("ops", OPS_GROUP))

    lifecycle.restart(experiment_id=experiment.pk)  # new bucket version: counts from zero
    assert all(arm["figures"] is None for arm in _arms(client.get(URL)).values())

    lifecycle.stop(experiment_id=experiment.pk, reason="test")
    assert tasks.refresh_experiment_figures() == 0
    assert not ExperimentFigures.objects.exists()
    assert client.get(URL).context["experiments"] == []
