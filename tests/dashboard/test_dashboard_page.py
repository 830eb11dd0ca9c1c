"""The dashboard page: who may open it, bad filters are a 400 with a message, and what it
shows comes from the daily aggregates."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.test import Client
from django.utils import timezone

from billing.daily_revenue import DailyRevenue
from marketplace.models import DailyFunnel
from partners.permissions import grant_partner_access
from partners.roles import COMPLIANCE_GROUP, FINANCE_GROUP, OPS_GROUP
from tests.factories import PartnerFactory, ProductFactory

URL = "/admin/dashboard/"


def staff(name: str, *groups: str) -> Any:
    user = get_user_model().objects.create_user(name, password="pw-123456!", is_staff=True)
    for group in groups:
        user.groups.add(Group.objects.get(name=group))
    return user


def client_for(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.mark.parametrize(
    ("role", "status"), [(OPS_GROUP, 200), (FINANCE_GROUP, 200), (COMPLIANCE_GROUP, 403)]
)
def test_ops_and_finance_see_the_dashboard_compliance_does_not(
    db: None, role: str, status: int
) -> None:
    response = client_for(staff(role, role)).get(URL)
    assert response.status_code == status
    index = client_for(staff(f"{role}-i", role)).get("/admin/")
    assert (URL in index.content.decode()) is (status == 200)


def test_partner_staff_never_see_it_even_with_the_permission(db: None) -> None:
    user = staff("lender-staff", OPS_GROUP)  # given every ops permission by mistake
    grant_partner_access(user=user, partner=PartnerFactory())
    assert client_for(user).get(URL).status_code == 403


def test_anonymous_and_non_staff_are_sent_to_the_login(db: None) -> None:
    assert Client().get(URL).status_code == 302
    user = get_user_model().objects.create_user("customer", password="pw-123456!")
    response = client_for(user).get(URL)
    assert response.status_code == 302 and "/admin/login/" in response["Location"]


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("start=2026-13-01", "Enter a valid date"),
        ("start=yesterday", "Enter a valid date"),
        ("start=2026-03-10&end=2026-03-01", "The start date is after the end date."),
        ("start=2020-01-01&end=2026-01-01", "Choose at most 366 days."),
        ("group=nonsense", "Select a valid choice"),
        ("partner=not-a-uuid", "is not a valid UUID"),
    ],
)
def test_bad_filters_answer_400_with_a_message(db: None, query: str, message: str) -> None:
    response = client_for(staff("ops", OPS_GROUP)).get(f"{URL}?{query}")
    assert response.status_code == 400
    assert message in response.content.decode()


def test_figures_come_from_the_aggregates_and_stay_in_range(db: None) -> None:
    product = ProductFactory(partner=PartnerFactory(name="Lender A"), daily_cap=10)
    today = timezone.now().date()
    common = {"channel": "app", "risk_tier": "R5", "is_sandbox": False}
    DailyFunnel.objects.create(day=today, **common, referred=9)
    DailyFunnel.objects.create(
        day=today,
        partner=product.partner,
        product=product,
        **common,
        matched=8,
        delivered=4,
        approved=2,
        funded=1,
        returned=1,
        pings=4,
        ping_timeouts=1,
        ping_latency_ms_sum=800,
        delivery_failures=3,
    )
    # Outside the default 30 days, and sandbox: neither counted.
    DailyFunnel.objects.create(day=today - timedelta(days=30), **common, referred=1000)
    DailyFunnel.objects.create(day=today, **{**common, "is_sandbox": True}, referred=500)
    DailyRevenue.objects.create(
        day=today, partner=product.partner, fee_type="cpl", currency="CNY", amount=Decimal("120.00")
    )
    response = client_for(staff("finance", FINANCE_GROUP)).get(URL)
    assert response.status_code == 200
    context = response.context
    assert context["totals"]["referred"] == 9
    assert context["totals"]["approval_rate"] == 0.5
    assert context["totals"]["return_rate"] == 0.25
    assert context["totals"]["timeout_rate"] == 0.25
    assert context["totals"]["mean_ping_ms"] == 200
    assert context["revenue"]["earnings_per_lead"] == {"CNY": Decimal("30.00")}
    assert context["caps"][0]["used"] == 8 and context["caps"][0]["cap"] == 10
    assert context["failures"][0]["failures"] == 3
    body = response.content.decode()
    assert "leads whose delivery failed" in body
    assert 'id="dashboard-data"' in body


def test_running_experiments_are_listed_with_their_arms_side_by_side(db: None) -> None:
    from marketplace.models.experiments import Arm, Experiment, Strategy, StrategyVersion

    strategy = Strategy.objects.create(key="best-value", name="Best value")
    versions = [
        StrategyVersion.objects.create(strategy=strategy, version=n, kind=kind)
        for n, kind in ((1, "shared_broadcast"), (2, "exclusive_best_value"))
    ]
    running = Experiment.objects.create(
        key="excl-vs-shared",
        name="Exclusive or shared",
        status="running",
        started_at=timezone.now(),
    )
    Arm.objects.create(
        experiment=running, key="shared", is_control=True, strategy_version=versions[0]
    )
    Arm.objects.create(experiment=running, key="exclusive", strategy_version=versions[1])
    Experiment.objects.create(key="draft-one", name="Not started")
    ops = client_for(staff("ops", OPS_GROUP)).get(URL)
    experiments = ops.context["experiments"]
    assert [e["key"] for e in experiments] == ["excl-vs-shared"]
    assert [(a["key"], a["is_control"]) for a in experiments[0]["arms"]] == [
        ("shared", True),
        ("exclusive", False),
    ]
    assert "Best value (best-value) v2" in ops.content.decode()
    finance = client_for(staff("finance", FINANCE_GROUP)).get(URL)
    assert "experiments" not in finance.context  # not finance's to see
