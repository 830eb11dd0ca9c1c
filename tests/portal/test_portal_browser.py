"""Partner staff's journey through the portal in a real browser (Playwright driving
Debian's chromium, headless, at 1366 px): sign in, see only their own leads, invoices and
payments, request a return, rotate an API key and the webhook secret, acknowledge a
deletion, and find another partner's objects refused by direct URL; and an operator's
invitation from the admin, accepted through its link once. Every page visited is
saved as a screenshot under the run's output folder: ``$BROWSER_SCREENSHOTS_DIR`` when set
(CI), otherwise pytest's base temporary directory, in ``screenshots/partner-staff/``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from django.db import transaction
from django.urls import reverse

from marketplace.models import LeadEvent
from partners.models import ApiKey
from tests.billing.test_invoice_pdf import pdf_text
from tests.browser import CHROMIUM, CHROMIUM_ARGS, VIEWPORT, needs_chromium, screenshot_folder
from tests.browser import Journey as BaseJourney
from tests.portal.conftest import PASSWORD, World, build_world

pytestmark = needs_chromium


@pytest.fixture
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return screenshot_folder(tmp_path_factory, "partner-staff")


class Journey(BaseJourney):
    """The browser page plus the bookkeeping every step shares."""

    def text(self, selector: str = "main") -> str:
        return str(self.page.inner_text(selector))


def test_partner_staff_work_in_their_own_portal(
    live_server: Any, monkeypatch: pytest.MonkeyPatch, screenshots: Path
) -> None:
    sync_api = pytest.importorskip("playwright.sync_api")
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with transaction.atomic():  # live_server: no test transaction around us
        world: World = build_world()
    a, b = world.a, world.b

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

            # Signing in: the portal's own login page, then back to the page asked for.
            journey.open(reverse("portal:leads"), "login")
            assert "/portal/login/" in page.url
            # Our stylesheet applied (served locally, under the CSP).
            background = page.evaluate("getComputedStyle(document.body).backgroundColor")
            assert background == "rgb(245, 247, 249)"
            page.fill("#id_username", "alpha")
            page.fill("#id_password", PASSWORD)
            page.click("button[type=submit]")
            page.wait_for_url(f"{live_server.url}{reverse('portal:leads')}")
            journey.snap("leads")
            links = page.eval_on_selector_all(
                "table.leads a", "els => els.map(e => e.getAttribute('href'))"
            )
            assert f"/portal/leads/{a.lead.pk}/" in links
            assert f"/portal/leads/{a.returned_lead.pk}/" in links
            assert not any(str(b.lead.pk) in link for link in links)
            assert "Li Na" not in page.content()

            # Request a return on a delivered lead, and follow its status.
            journey.open(reverse("portal:lead_detail", kwargs={"lead_id": a.lead.pk}), "lead")
            page.select_option("#id_reason", "invalid_contact")
            page.click("#return-form button[type=submit]")
            page.wait_for_selector("#lead-returns")
            journey.snap("lead-returned")
            assert "Accepted: credited" in journey.text("#lead-returns")
            assert journey.text("#lead-status") == "Returned"
            assert page.locator("#return-form").count() == 0  # returned once
            assert LeadEvent.objects.filter(
                lead=a.lead, type="returned", reason="invalid_contact"
            ).exists()
            journey.open(reverse("portal:returns"), "returns")
            assert "invalid_contact" in journey.text("#returns")

            # Invoices, credit notes and payments: their own only; the PDF downloads.
            journey.open(reverse("portal:invoices"), "invoices")
            invoices = journey.text("#invoices")
            assert a.invoice.number in invoices and b.invoice.number not in invoices
            assert a.credit_note.number in journey.text("#credit-notes")
            journey.open(
                reverse("portal:invoice_detail", kwargs={"invoice_id": a.invoice.pk}), "invoice"
            )
            with page.expect_download() as download_info:
                page.click("#invoice-pdf")
            pdf = Path(download_info.value.path()).read_bytes()
            assert a.invoice.number in pdf_text(pdf)
            journey.open(reverse("portal:payments"), "payments")
            payments = journey.text("#payments")
            assert "ALPHA-REF-11" in payments and "BRAVO-REF-77" not in payments
            journey.open(reverse("portal:statement"), "statement")
            assert "CNY" in journey.text("#balance")

            # Rotate an API key: a new live key (shown once), then the old one revoked.
            journey.open(reverse("portal:keys"), "keys")
            page.fill("#id_name", "rotated")
            page.select_option("#id_mode", "live")
            page.click("#key-form button[type=submit]")
            page.wait_for_selector("#new-key-value")
            journey.snap("key-created")
            new_key = page.input_value("#new-key-value")
            assert new_key.startswith(f"{new_key.split('_')[0]}_live_")
            page.click(f"#key-{a.key.prefix} button")
            page.wait_for_selector(f"#key-{a.key.prefix} >> text=Revoked")
            journey.snap("key-revoked")
            assert new_key not in page.content()  # shown once
            assert ApiKey.objects.get(pk=a.key.pk).revoked_at is not None
            assert ApiKey.objects.filter(partner=a.partner, name="rotated", mode="live").exists()

            # The webhook endpoint: rotate the signing secret (shown once); the logs.
            journey.open(reverse("portal:webhooks"), "webhooks")
            page.click(f"#rotate-{a.endpoint.pk}")
            page.wait_for_selector("#new-secret-value")
            journey.snap("secret-rotated")
            assert page.input_value("#new-secret-value").startswith("whsec_")
            journey.open(
                reverse("portal:message_detail", kwargs={"message_id": a.message.pk}), "message"
            )
            journey.open(reverse("portal:deliveries"), "lead-posts")
            journey.open(reverse("portal:stats"), "funnel")
            assert "Returned" in journey.text("#funnel")

            # A withdrawn applicant's data: acknowledge the deletion.
            journey.open(reverse("portal:withdrawals"), "withdrawals")
            page.click("#withdrawals button[type=submit]")
            page.wait_for_selector("#withdrawals .status-acknowledged")
            journey.snap("withdrawal-acknowledged")

            # Another partner's objects by direct URL: not found.
            for name, kwargs in (
                ("lead_detail", {"lead_id": b.lead.pk}),
                ("invoice_detail", {"invoice_id": b.invoice.pk}),
                ("message_detail", {"message_id": b.message.pk}),
            ):
                response = journey.open(reverse(f"portal:{name}", kwargs=kwargs), f"b-{name}")
                assert response.status == 404, name
            response = page.request.get(
                live_server.url + reverse("portal:invoice_pdf", kwargs={"invoice_id": b.invoice.pk})
            )
            assert response.status == 404

            journey.open(reverse("portal:home"), "status")
            assert journey.text("#partner-status") == "Live"
            page.click("header .logout button")
            page.wait_for_url(f"{live_server.url}{reverse('portal:login')}")
        finally:
            browser.close()

    violations = [text for text in console if "Content Security Policy" in text]
    assert violations == []
    assert len(journey.shots) >= 15 and all(path.stat().st_size > 0 for path in journey.shots)


def test_an_operator_invites_partner_staff_who_join_through_the_link(
    live_server: Any, monkeypatch: pytest.MonkeyPatch, screenshots: Path
) -> None:
    sync_api = pytest.importorskip("playwright.sync_api")
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with transaction.atomic():
        world: World = build_world()
    folders = {who: screenshots / f"invitation-{who}" for who in ("operator", "invitee")}
    for folder in folders.values():
        folder.mkdir(exist_ok=True)

    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=os.fspath(CHROMIUM), args=CHROMIUM_ARGS, headless=True
        )
        try:
            operator = Journey(
                browser.new_page(viewport=VIEWPORT), live_server.url, folders["operator"]
            )
            page = operator.page
            page.goto(f"{live_server.url}/admin/login/")
            page.fill("#id_username", "ops")
            page.fill("#id_password", PASSWORD)
            page.click("input[type=submit]")
            page.wait_for_url(f"{live_server.url}/admin/")
            operator.open(reverse("admin:portal_partnerinvitation_add"), "admin-invite")
            page.select_option("#id_partner", str(world.a.partner.pk))
            page.fill("#id_name", "Zhao Lei")
            page.fill("#id_email", "zhao.lei@alpha.example")
            page.click("input[name=_save]")
            page.wait_for_selector("#invitation-link")
            operator.snap("admin-invitation-created")
            link = page.input_value("#invitation-link")
            assert "/portal/invite/" in link

            invitee = Journey(
                browser.new_page(viewport=VIEWPORT), live_server.url, folders["invitee"]
            )
            page = invitee.page
            page.goto(link)
            invitee.snap("invitation")
            page.fill("#id_username", "zhaolei")
            page.fill("#id_password", "Kiwi-Orbit-2026-Lantern")
            page.fill("#id_password_again", "Kiwi-Orbit-2026-Lantern")
            page.click("button[type=submit]")
            page.wait_for_url(f"{live_server.url}{reverse('portal:home')}")
            invitee.snap("joined")
            assert page.inner_text("#partner-name") == "Alpha Lending"
            response = page.goto(link)
            invitee.snap("invitation-used")
            assert response.status == 404
        finally:
            browser.close()
