"""The strategy lab as an ops user runs it, in a real browser (Playwright driving Debian's
chromium, headless, at 1366 px): create two strategies and their first versions, set up an
experiment with a control and a treatment arm and its traffic split, start it, send the
simulator's synthetic applicants through it (``manage.py simulate`` against the simulated
partner lenders it starts), read the experiment's per-arm funnel, intervals and sample-ratio
check, promote the winning arm with a reason, and find the promotion recorded with who and
when. Every page is saved as a screenshot under ``$BROWSER_SCREENSHOTS_DIR`` (or pytest's
base temporary directory) in ``screenshots/lab/``."""

from __future__ import annotations

import io
import os
import re
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management import call_command
from django.db import transaction
from django.urls import reverse

from marketplace.experiments import strategies
from marketplace.experiments.results import results
from marketplace.models import (
    Experiment,
    ExperimentStatus,
    Lead,
    RoutingDecision,
    StrategyPromotion,
    StrategyVersion,
)
from tests.browser import (
    CHROMIUM,
    CHROMIUM_ARGS,
    VIEWPORT,
    Journey,
    needs_chromium,
    screenshot_folder,
)

PASSWORD = "pw-Lab-Journey-1!"
CHANGE_PAGE = re.compile(r"/change/(\?.*)?$")
LIST_PAGE = re.compile(r"/admin/marketplace/[a-z]+/(\?.*)?$")
REFERRALS = 60

pytestmark = needs_chromium


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def _browser(live_server: Any, folder: Path) -> Iterator[tuple[Journey, list[str]]]:
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=os.fspath(CHROMIUM), args=CHROMIUM_ARGS, headless=True
        )
        try:
            page = browser.new_context(viewport=VIEWPORT).new_page()
            # Playwright's 30 s default is short on a busy 2-core CI machine.
            page.set_default_timeout(120_000)
            console: list[str] = []
            page.on("console", lambda message: console.append(message.text))
            yield Journey(page, live_server.url, folder), console
        finally:
            browser.close()


def _messages(page: Any) -> str:
    found = page.query_selector("ul.messagelist")
    return str(found.inner_text()) if found else ""


def _add_strategy(journey: Journey, key: str, name: str, kind: str, note: str) -> None:
    """A strategy, then its first version (the page the strategy's save leads to)."""
    page = journey.page
    journey.open(reverse("admin:marketplace_strategy_add"), f"strategy-add-{key}")
    page.fill("#id_key", key)
    page.fill("#id_name", name)
    page.click("input[name=_save]")
    page.wait_for_url(re.compile(r"/strategyversion/add/\?strategy=\d+$"))
    journey.snap(f"version-add-{key}")
    assert "now give it its first version" in _messages(page), _messages(page)
    # The version's form opens on the new strategy.
    assert page.locator("#id_strategy option:checked").inner_text() == f"{name} ({key})"
    page.select_option("#id_kind", value=kind)
    page.fill("#id_note", note)
    page.click("input[name=_save]")
    page.wait_for_url(LIST_PAGE)
    journey.snap(f"version-saved-{key}")


def _action(journey: Journey, experiment_key: str, action: str) -> None:
    page = journey.page
    journey.open(reverse("admin:marketplace_experiment_changelist"), f"experiments-{action}")
    row = page.locator("#result_list tbody tr", has_text=experiment_key)
    row.locator("input.action-select").check()
    page.select_option("select[name=action]", value=action)
    page.click("button[name=index]")


def test_ops_set_up_run_read_and_promote_an_experiment_in_the_browser(
    live_server: Any,
    monkeypatch: pytest.MonkeyPatch,
    settings: Any,
    tmp_path: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    settings.VAR_DIR = tmp_path
    with transaction.atomic():  # live_server: no test transaction around us
        simulator_port = _free_port()  # the demo partners' endpoints answer there
        call_command(
            "seed_demo",
            "--simulator-url",
            f"http://127.0.0.1:{simulator_port}",
            "--no-lab",  # ops set the lab up from nothing here, demo strategies aside
            stdout=io.StringIO(),
        )
        ops = get_user_model().objects.create_user("ops-lab", password=PASSWORD, is_staff=True)
        ops.groups.add(Group.objects.get(name="ops"))

    folder = screenshot_folder(tmp_path_factory, "lab")
    with _browser(live_server, folder) as (journey, console):
        page = journey.page
        page.goto(f"{live_server.url}/admin/login/")
        page.fill("#id_username", "ops-lab")
        page.fill("#id_password", PASSWORD)
        page.click("input[type=submit]")
        page.wait_for_url(f"{live_server.url}/admin/")
        journey.snap("index")

        # Two strategies: the products' own settings (control) and a shared broadcast to
        # up to three partners (treatment).
        _add_strategy(journey, "as-configured", "As configured", "product_defaults", "control")
        _add_strategy(journey, "broadcast-3", "Broadcast to three", "shared_broadcast", "more")

        # The experiment: control and treatment, split 50/50, on all of the layer.
        journey.open(reverse("admin:marketplace_experiment_add"), "experiment-add")
        page.fill("#id_key", "broadcast-trial")
        page.fill("#id_name", "Broadcast trial")
        page.fill("#id_hypothesis", "Sharing with three partners earns more per referral")
        page.select_option("#id_primary_metric", value="revenue")
        page.fill("#id_max_referrals", "5000")
        for index, (arm, label, control) in enumerate(
            [("control", "as-configured v1", True), ("broadcast", "broadcast-3 v1", False)]
        ):
            page.click(".add-row a")
            page.fill(f"#id_arms-{index}-key", arm)
            if control:
                page.check(f"#id_arms-{index}-is_control")
            page.select_option(f"#id_arms-{index}-strategy_version", label=label)
            page.fill(f"#id_arms-{index}-weight", "1")
        journey.snap("experiment-filled")
        page.click("input[name=_save]")
        page.wait_for_url(LIST_PAGE)
        journey.snap("experiment-saved")
        assert "was added successfully" in _messages(page), page.inner_text("#content")

        _action(journey, "broadcast-trial", "start")
        page.wait_for_url(LIST_PAGE)
        journey.snap("experiment-started")
        assert "broadcast-trial: started" in _messages(page).lower()
        experiment = Experiment.objects.get(key="broadcast-trial")
        assert experiment.status == ExperimentStatus.RUNNING

        # Traffic: the simulator's applicants through intake, routing, delivery to its
        # simulated partner lenders and their outcome postbacks, and billing.
        out = io.StringIO()
        call_command(
            "simulate",
            "--referrals",
            str(REFERRALS),
            "--seed",
            "11",
            "--simulator-port",
            str(simulator_port),
            stdout=out,
            stderr=io.StringIO(),
        )
        decided = RoutingDecision.objects.filter(experiment_key="broadcast-trial")
        assert decided.filter(arm_key="control").exists(), out.getvalue()
        assert decided.filter(arm_key="broadcast").exists(), out.getvalue()
        assert Lead.objects.filter(delivered_at__isnull=False).exists(), out.getvalue()

        # Its page: the per-arm funnel, intervals and the sample-ratio check.
        journey.open(reverse("admin:marketplace_experiment_changelist"), "experiments-after")
        page.click("text=broadcast-trial")
        page.wait_for_url(CHANGE_PAGE)
        journey.snap("experiment-results")
        table = page.locator("table.lab-results").first
        text = str(table.inner_text())
        found = results(experiment)
        for result in found.arms:
            row = table.locator("tbody tr", has_text=result.key)
            assert str(result.referrals) in str(row.inner_text()), (result.key, text)
        assert "Sample ratio: p =" in page.inner_text("#content-main")
        assert "always-valid" in page.inner_text("#content-main")
        # The intervals: a conversion rate's never leaves [0%, 100%].
        intervals = str(page.locator("table.lab-results").nth(1).inner_text())
        for result in found.arms:
            assert result.conversion is not None
            assert 0.0 <= result.conversion.low <= result.conversion.high <= 1.0
            shown = f"[{result.conversion.low:.1%}, {result.conversion.high:.1%}]"
            assert shown in intervals, (shown, intervals)
        assert not found.ratio.mismatch  # the hash split routing did, checked by chi-square

        # Promote: the winning arm if the intervals name one, else the treatment (ops may
        # decide on a trend; the page says which arm the rule would suggest).
        _action(journey, "broadcast-trial", "promote")
        journey.snap("promote-form")
        chosen = found.winner or "broadcast"
        assert "No strategy has been promoted" in page.inner_text("#content")
        # No reason, no promotion: the form will not go without one.
        assert page.locator("#id_reason").evaluate("e => e.validity.valueMissing")
        page.select_option("#id_arm", label=f"broadcast-trial/{chosen}")
        page.fill("#id_reason", "Broadcast earns more per referral; sample ratio fine")
        page.click("input[name=apply]")
        page.wait_for_url(LIST_PAGE)
        journey.snap("promoted")
        assert "is the default strategy now" in _messages(page), _messages(page)

        journey.open(reverse("admin:marketplace_strategypromotion_changelist"), "promotions")
        assert "ops-lab" in page.inner_text("#result_list")
        page.click("#result_list tbody tr a")
        page.wait_for_url(CHANGE_PAGE)
        journey.snap("promotion")
        assert "Broadcast earns more per referral" in page.inner_text("#content-main")
        journey.open(reverse("admin:marketplace_strategyversion_changelist"), "versions")

    default = strategies.default_version()
    assert (
        default is not None
        and str(default) == f"{'broadcast-3' if chosen == 'broadcast' else 'as-configured'} v1"
    )
    promotion = StrategyPromotion.objects.get()
    assert promotion.promoted_by == ops
    assert promotion.experiment == experiment and promotion.arm is not None
    assert promotion.arm.key == chosen
    assert promotion.reason == "Broadcast earns more per referral; sample ratio fine"
    assert promotion.previous is None
    experiment.refresh_from_db()
    assert experiment.status == ExperimentStatus.PROMOTED
    assert StrategyVersion.objects.filter(is_default=True).count() == 1
    assert [t for t in console if "Content Security Policy" in t] == []
