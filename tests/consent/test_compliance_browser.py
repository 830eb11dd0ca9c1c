"""In a real browser: a compliance officer logs into the admin, finds an applicant by phone
number and reveals one field with a reason (Playwright driving Debian's chromium)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from django.db import transaction

from consent import grants, vault
from consent.models import LedgerEntry, RevealRecord
from partners.models import Partner
from tests.consent.conftest import MakeApplicant, MakeGrant
from tests.consent.support import disclose_to, staff_user

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
REASON = "Complaint 2026-114: applicant disputes a disclosure"

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="needs Debian chromium at /usr/bin/chromium (apt-get install)"
)


def test_officer_finds_an_applicant_and_reveals_a_field_with_a_reason(
    live_server: Any,
    monkeypatch: pytest.MonkeyPatch,
    make_grant: MakeGrant,
    make_applicant: MakeApplicant,
    partner: Partner,
) -> None:
    sync_api = pytest.importorskip("playwright.sync_api")
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with transaction.atomic():  # live_server: no test transaction around us
        subject = vault.store_subject(
            applicant=make_applicant(phone="+86 139 1234 5678"), is_sandbox=False
        )
    grant = make_grant(partners=[partner], subject=subject)
    disclose_to(grant, [partner])
    grants.withdraw(grant_id=grant.id, channel="api")
    staff_user("officer", groups=["compliance"], permissions=["consent.reveal_subject"])

    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=os.fspath(CHROMIUM), args=CHROMIUM_ARGS, headless=True
        )
        try:
            page = browser.new_page()
            page.goto(f"{live_server.url}/admin/login/")
            page.fill("#id_username", "officer")
            page.fill("#id_password", "pw-123456!")
            page.click("input[type=submit]")
            page.goto(f"{live_server.url}/admin/consent/subject/")
            page.click("text=Find an applicant")

            page.fill("#id_phone", "139 1234 5678")
            page.click("#find-applicant input[type=submit]")
            page.wait_for_selector("#match-count")
            history = page.content()
            assert "1 subject(s) match" in history
            assert str(subject.id) in history and str(grant.id) in history
            assert "王小明" not in history and "1234 5678" not in history
            assert "phone" not in page.url and "1234" not in page.url

            form = page.locator(f"#subject-{subject.id} form.reveal-form")
            form.locator("input[value=full_name]").check()
            form.locator("textarea[name=reason]").fill(REASON)
            form.locator("input[type=submit]").click()
            page.wait_for_selector("#revealed-data")
            assert "王小明" in page.locator("#revealed-data").inner_text()
            assert "王小明" not in page.url
        finally:
            browser.close()

    record = RevealRecord.objects.get()
    assert (record.user.username, record.fields, record.reason) == (
        "officer",
        ["full_name"],
        REASON,
    )
    assert LedgerEntry.objects.filter(kind="data.revealed").count() == 1
