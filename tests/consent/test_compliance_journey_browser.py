"""Compliance's journey in a real browser (issue 12, item 8): an officer signs in to the
admin, finds an applicant by phone number, exports the applicant's audit bundle (the
progress page follows the worker through our own script until the download appears),
downloads it and checks it with the project's offline verifier against the key the admin
shows, verifies the whole ledger from the admin, and withdraws the consent with a reason.

Playwright drives Debian's chromium headless at 1366 px. Every page visited is saved as a
screenshot under the run's output folder: ``$BROWSER_SCREENSHOTS_DIR`` when set (CI),
otherwise pytest's base temporary directory, in ``screenshots/compliance/``."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest
from django.db import transaction
from django.urls import reverse

from consent import audit_jobs, grants, ledger, tasks, vault
from consent.models import AuditJob, ConsentWithdrawal, DeletionRequest, LedgerEntry
from partners.models import Partner, WebhookMessage
from partners.webhook_signing import create_endpoint
from tests.browser import CHROMIUM, CHROMIUM_ARGS, VIEWPORT, needs_chromium, screenshot_folder
from tests.browser import Journey as BaseJourney
from tests.consent.conftest import MakeApplicant, MakeGrant
from tests.consent.support import APPLICANT_SECRETS, disclose_to, staff_user
from tests.factories import PartnerFactory

PHONE = "+86 139 8765 4321"
LISTS = (
    "subject",
    "consentgrant",
    "consentwithdrawal",
    "disclosure",
    "deletionrequest",
    "revealrecord",
    "ledgerentry",
    "checkpoint",
    "consenttext",
)
REASON = "Applicant withdrew by phone, ticket 2026-311"

pytestmark = needs_chromium


@pytest.fixture
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return screenshot_folder(tmp_path_factory, "compliance")


class Journey(BaseJourney):
    def content(self) -> str:
        return str(self.page.content())


def test_compliance_finds_exports_verifies_and_withdraws_in_the_browser(
    live_server: Any,
    monkeypatch: pytest.MonkeyPatch,
    settings: Any,
    tmp_path: Path,
    screenshots: Path,
    make_grant: MakeGrant,
    make_applicant: MakeApplicant,
) -> None:
    sync_api = pytest.importorskip("playwright.sync_api")
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    settings.VAR_DIR = tmp_path / "var"
    partners: list[Partner] = []
    with transaction.atomic():  # live_server: no test transaction around us
        for name in ("Alpha Lending", "Beta Credit"):
            partner = PartnerFactory(name=name)
            create_endpoint(partner=partner, url=f"https://{partner.slug}.example.invalid/hooks")
            partners.append(partner)
        subject = vault.store_subject(applicant=make_applicant(phone=PHONE), is_sandbox=False)
    grant = make_grant(partners=partners, subject=subject)
    disclose_to(grant, partners)
    with transaction.atomic():
        ledger.make_checkpoint()
    staff_user("officer", groups=["compliance"], permissions=["consent.add_consentwithdrawal"])
    # The export is left queued, as behind a busy worker, so the page has to follow it.
    queued: list[AuditJob] = []
    monkeypatch.setattr(tasks, "_queue", queued.append)

    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=os.fspath(CHROMIUM), args=CHROMIUM_ARGS, headless=True
        )
        try:
            context = browser.new_context(viewport=VIEWPORT, accept_downloads=True)
            page = context.new_page()
            console: list[str] = []
            page.on("console", lambda message: console.append(message.text))
            journey = Journey(page, live_server.url, screenshots)

            journey.open(reverse("admin:login"), "login")
            page.fill("#id_username", "officer")
            page.fill("#id_password", "pw-123456!")
            page.click("input[type=submit]")
            page.wait_for_url(f"{live_server.url}{reverse('admin:index')}")
            journey.snap("index")
            assert "have permission to view or edit anything" not in journey.content()

            # Find the applicant by phone number.
            page.click(f"a[href='{reverse('admin:consent_subject_changelist')}']")
            journey.snap("subjects")
            page.click("text=Find an applicant")
            journey.snap("find")
            page.fill("#id_phone", "139 8765 4321")
            page.click("#find-applicant input[type=submit]")
            page.wait_for_selector("#match-count")
            journey.snap("found")
            found = journey.content()
            assert "1 subject(s) match" in found
            assert str(subject.id) in found and str(grant.id) in found
            assert not any(secret in found for secret in APPLICANT_SECRETS)
            assert "8765" not in page.url
            public_key = page.inner_text("#ledger-public-key").strip()

            # Export the applicant's audit bundle; the progress page follows the job.
            page.click(f"#subject-{subject.id} a.export-bundle")
            page.wait_for_selector("#export-form")
            assert page.input_value("#id_subject") == str(subject.id)
            journey.snap("export-form")
            page.click("#export-form input[type=submit]")
            page.wait_for_selector("#audit-job[data-state=queued]")
            journey.snap("export-queued")
            (job,) = queued
            audit_jobs.run(job_id=job.pk)  # the worker picks it up
            page.wait_for_selector("#download-bundle", timeout=15_000)
            journey.snap("export-done")
            with page.expect_download() as download_info:
                page.click("#download-bundle")
            bundle = tmp_path / "bundle.zip"
            download_info.value.save_as(os.fspath(bundle))
            folder = tmp_path / "bundle"
            zipfile.ZipFile(bundle).extractall(folder)
            checked = subprocess.run(
                [sys.executable, folder / "verify_bundle.py", folder, "--public-key", public_key],
                capture_output=True,
                text=True,
                check=False,
            )
            assert checked.returncode == 0, checked.stdout + checked.stderr
            assert "OK" in checked.stdout

            # Verify the whole ledger from the admin (this one runs at once).
            monkeypatch.undo()
            monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
            settings.VAR_DIR = tmp_path / "var"
            journey.open(reverse("admin:consent_subject_changelist"), "subjects-again")
            page.click("text=Verify the ledger")
            page.wait_for_selector("#verify-form")
            journey.snap("verify-form")
            page.click("#verify-form input[type=submit]")
            page.wait_for_selector("#verify-report", timeout=15_000)
            journey.snap("verify-report")
            assert page.get_attribute("#verify-report", "data-ok") == "true"
            assert "Consent ledger OK" in page.inner_text("#verify-verdict")

            # Withdraw the consent, with a reason and a confirmation.
            journey.open(reverse("admin:consent_subject_history", args=[subject.id]), "history")
            page.click(f"#subject-{subject.id} a.withdraw-consent")
            page.wait_for_selector("#withdraw-form")
            journey.snap("withdraw-form")
            recipients = page.inner_text("#withdraw-recipients")
            assert "Alpha Lending" in recipients and "Beta Credit" in recipients
            page.fill("#id_reason", REASON)
            page.check("#id_confirm")
            page.click("#withdraw-form input[type=submit]")
            page.wait_for_selector("ul.messagelist")
            journey.snap("withdrawn")
            assert "Withdrew consent" in page.inner_text("ul.messagelist")
            assert f"Consent {grant.id}: withdrawn" in journey.content()

            # The job list keeps the trail.
            journey.open(reverse("admin:consent_auditjob_changelist"), "audit-jobs")
            assert page.locator("#result_list tbody tr").count() == 2
            assert page.locator("#result_list a", has_text="download").count() == 1
            assert page.locator("#result_list a", has_text="report").count() == 1

            # Every consent list fits the screen (its table does not scroll sideways) and
            # shows no personal data.
            for model in LISTS:
                journey.open(reverse(f"admin:consent_{model}_changelist"), f"list-{model}")
                overflow = page.evaluate(
                    "(() => { const r = document.querySelector('#changelist .results');"
                    " return r ? r.scrollWidth - r.clientWidth : 0; })()"
                )
                assert overflow <= 0, (model, overflow)
                assert not any(secret in journey.content() for secret in APPLICANT_SECRETS)
        finally:
            browser.close()

    assert not [line for line in console if "Content Security Policy" in line], console
    withdrawal = ConsentWithdrawal.objects.get(grant=grant)
    assert (withdrawal.channel, withdrawal.reason) == ("admin", REASON)
    assert LedgerEntry.objects.filter(kind="consent.withdrawn").count() == 1
    assert DeletionRequest.objects.filter(withdrawal=withdrawal).count() == 2
    assert WebhookMessage.objects.filter(event_type="consent.withdrawn").count() == 2
    assert len(journey.shots) == 15 + len(LISTS)
    grants.withdraw(grant_id=grant.id, channel="api")  # idempotent: still one withdrawal
    assert ConsentWithdrawal.objects.count() == 1
