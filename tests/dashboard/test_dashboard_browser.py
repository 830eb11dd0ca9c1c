"""In a real browser (Playwright driving Debian's chromium, headless): an ops user opens the
dashboard from the admin index and the charts are drawn (Chart.js served from our own
origin) with no Content-Security-Policy violation; a screenshot goes to the test's folder."""

from __future__ import annotations

import os
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import transaction
from django.utils import timezone

from billing import lab_figures
from billing.daily_revenue import DailyRevenue
from marketplace.experiments import lifecycle, strategies
from marketplace.models import Arm, DailyFunnel, Experiment, Strategy
from partners.roles import OPS_GROUP
from tests.factories import PartnerFactory, ProductFactory

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"]
CHARTS = ["chart-funnel", "chart-revenue", "chart-pings", "chart-caps"]
# True when the canvas has a drawn (not fully transparent) pixel.
DRAWN = """(id) => {
  const canvas = document.getElementById(id);
  const pixels = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
  for (let i = 3; i < pixels.length; i += 4) { if (pixels[i] !== 0) return true; }
  return false;
}"""

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="needs Debian chromium at /usr/bin/chromium (apt-get install)"
)


def test_ops_user_sees_the_dashboard_charts_drawn_under_the_policy(
    live_server: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    sync_api = pytest.importorskip("playwright.sync_api")
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    today = timezone.now().date()
    with transaction.atomic():  # live_server: no test transaction around us
        user = get_user_model().objects.create_user("ops", password="pw-123456!", is_staff=True)
        user.groups.add(Group.objects.get(name=OPS_GROUP))
        product = ProductFactory(partner=PartnerFactory(name="Lender A"), daily_cap=50)
        for back, n in enumerate([30, 24, 27, 35]):
            day = today - timezone.timedelta(days=back)
            DailyFunnel.objects.create(
                day=day, channel="app", risk_tier="R5", is_sandbox=False, referred=n
            )
            DailyFunnel.objects.create(
                day=day,
                partner=product.partner,
                product=product,
                channel="app",
                risk_tier="R5",
                is_sandbox=False,
                matched=n - 4,
                delivered=n - 6,
                accepted=n - 10,
                approved=n // 3,
                funded=n // 5,
                pings=n,
                ping_timeouts=2,
                ping_latency_ms_sum=n * 180,
                delivery_failures=1,
            )
            DailyRevenue.objects.create(
                day=day,
                partner=product.partner,
                fee_type="cpl",
                currency="CNY",
                amount=Decimal(n * 40),
            )
        # A running experiment whose arms the lab has figures for (no traffic yet).
        experiment = Experiment.objects.create(key="excl-vs-shared", name="Exclusive or shared")
        for key, kind in (("shared", "shared_broadcast"), ("exclusive", "exclusive_best_value")):
            strategy = Strategy.objects.create(key=f"lab-{key}", name=f"Lab {key}")
            Arm.objects.create(
                experiment=experiment,
                key=key,
                is_control=key == "shared",
                strategy_version=strategies.create_version(strategy=strategy, kind=kind),
            )
        lifecycle.start(experiment_id=experiment.pk)
        lab_figures.refresh()

    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=os.fspath(CHROMIUM), args=CHROMIUM_ARGS, headless=True
        )
        try:
            page = browser.new_page(viewport={"width": 1366, "height": 900})
            console: list[str] = []
            page.on("console", lambda message: console.append(message.text))
            page.goto(f"{live_server.url}/admin/login/")
            page.fill("#id_username", "ops")
            page.fill("#id_password", "pw-123456!")
            page.click("input[type=submit]")
            page.wait_for_url(f"{live_server.url}/admin/")
            page.click("#dashboard-link a")
            page.wait_for_url(f"{live_server.url}/admin/dashboard/")
            page.wait_for_load_state("networkidle")
            assert page.evaluate("typeof window.Chart === 'function'")
            for chart in CHARTS:
                page.wait_for_function(DRAWN, arg=chart)
            page.screenshot(path=os.fspath(tmp_path / "admin_dashboard.png"), full_page=True)
            # The experiment's arms side by side, with the lab's figures, within the screen.
            arms = page.inner_text("#experiment-excl-vs-shared").lower()  # headings: capitals
            assert "shared (control)" in arms and "exclusive" in arms
            assert "funded conversion" in arms and "revenue / referral (cny)" in arms
            assert page.evaluate("document.documentElement.scrollWidth") <= 1366
            page.locator("#dashboard-experiments").screenshot(
                path=os.fspath(tmp_path / "admin_dashboard_experiments.png")
            )
            # A bad range: the message, no charts, no error page.
            page.goto(f"{live_server.url}/admin/dashboard/?start=2026-03-10&end=2026-03-01")
            assert "The start date is after the end date." in page.inner_text("#dashboard")
            page.screenshot(path=os.fspath(tmp_path / "admin_dashboard_bad_range.png"))
        finally:
            browser.close()

    violations = [text for text in console if "Content Security Policy" in text]
    assert violations == []
