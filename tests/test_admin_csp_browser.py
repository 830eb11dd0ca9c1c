"""In a real browser (Playwright driving Debian's chromium): admin pages and the API docs
work under the Content-Security-Policy, with no violation reported on the console."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.db import transaction

from tests.factories import PartnerFactory, ProductFactory

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"]

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="needs Debian chromium at /usr/bin/chromium (apt-get install)"
)


def test_admin_and_api_docs_run_under_the_policy_without_violations(
    live_server: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    sync_api = pytest.importorskip("playwright.sync_api")
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with transaction.atomic():  # live_server: no test transaction around us
        get_user_model().objects.create_superuser("ops", "ops@example.invalid", "pw-123456!")
        product = ProductFactory(partner=PartnerFactory())

    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=os.fspath(CHROMIUM), args=CHROMIUM_ARGS, headless=True
        )
        try:
            page = browser.new_page()
            console: list[str] = []
            page.on("console", lambda message: console.append(message.text))
            page.goto(f"{live_server.url}/admin/login/")
            page.fill("#id_username", "ops")
            page.fill("#id_password", "pw-123456!")
            page.click("input[type=submit]")
            page.wait_for_url(f"{live_server.url}/admin/")

            for url, has_jquery in (
                ("/admin/", False),
                ("/admin/partners/product/", True),
                (f"/admin/partners/product/{product.pk}/change/", True),
            ):
                page.goto(live_server.url + url)
                page.wait_for_load_state("networkidle")
                # The admin's stylesheet applied (the header is not the browser's default).
                background = page.evaluate(
                    "getComputedStyle(document.querySelector('#header')).backgroundColor"
                )
                assert background not in ("rgba(0, 0, 0, 0)", "transparent"), url
                if has_jquery:  # the admin's scripts ran: its jQuery namespace exists
                    assert page.evaluate("typeof django === 'object' && !!django.jQuery"), url
                page.screenshot(
                    path=os.fspath(tmp_path / f"{url.strip('/').replace('/', '_')}.png")
                )
            # A change form's fieldset collapse and save buttons rendered by the admin JS.
            assert page.locator("input[name=_save]").count() == 1

            page.goto(f"{live_server.url}/api/docs/")
            page.wait_for_selector(".swagger-ui .info .title")
            assert "Decline Marketplace API" in page.inner_text(".swagger-ui .info .title")
        finally:
            browser.close()

    violations = [text for text in console if "Content Security Policy" in text]
    assert violations == []
