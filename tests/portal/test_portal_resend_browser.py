"""Partner staff send a failed lead post again from the portal in a real browser
(Playwright driving Debian's chromium, headless, at 1366 px), against the real partner
simulator: the delivery log links the failed lead, its page offers the re-send, and once
the partner's endpoint is fixed the lead is delivered. Screenshots of each page under
``screenshots/partner-resend/``."""

from __future__ import annotations

import os
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.db import transaction
from django.urls import reverse
from rest_framework.test import APIClient

from demo.lenders import SimulatedLender
from demo.server import PartnerSimulator
from marketplace.models import Lead, LeadStatus
from partners.keys import issue_api_key
from partners.permissions import grant_partner_access
from partners.webhook_signing import create_endpoint
from tests.browser import (
    CHROMIUM,
    CHROMIUM_ARGS,
    VIEWPORT,
    Journey,
    needs_chromium,
    screenshot_folder,
)
from tests.factories import (
    FeeScheduleFactory,
    PartnerFactory,
    ProductFactory,
    TrafficSourceFactory,
    published_consent_text,
    referral_payload,
)
from tests.marketplace.conftest import api_post
from tests.portal.conftest import PASSWORD

pytestmark = needs_chromium


def test_partner_staff_send_a_failed_post_again_from_the_delivery_log(
    live_server: Any,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path_factory: pytest.TempPathFactory,
    settings: Any,
) -> None:
    sync_api = pytest.importorskip("playwright.sync_api")
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.DELIVERY_MAX_RETRIES = 1
    with transaction.atomic():  # live_server: no test transaction around us
        partner = PartnerFactory(name="Alpha Lending")
        _, secret = create_endpoint(partner=partner, url="http://127.0.0.1:9/webhooks")
        lender = SimulatedLender(slug=partner.slug, secret=secret, error_rate=1.0)
        failing = PartnerSimulator([lender]).start()
        product = ProductFactory(partner=partner, post_url=failing.url_for(partner.slug, "post"))
        FeeScheduleFactory(partner=partner)
        user = get_user_model().objects.create_user("alpha", password=PASSWORD)
        grant_partner_access(user=user, partner=partner, manage=True)
        published_consent_text()
        source = TrafficSourceFactory()
    healthy = PartnerSimulator([SimulatedLender(slug=partner.slug, secret=secret)]).start()
    try:
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {issue_api_key(source=source).plaintext}")
        response = api_post(client, referral_payload())  # posted at commit: fails twice
        assert response.status_code == 201, response.content
        lead = Lead.objects.get(referral_id=response.json()["id"])
        assert lead.status == LeadStatus.DELIVERY_FAILED
        product.post_url = healthy.url_for(partner.slug, "post")  # the partner fixed it
        product.save()

        with sync_api.sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=os.fspath(CHROMIUM), args=CHROMIUM_ARGS, headless=True
            )
            try:
                page = browser.new_context(viewport=VIEWPORT).new_page()
                console: list[str] = []
                page.on("console", lambda message: console.append(message.text))
                journey = Journey(
                    page, live_server.url, screenshot_folder(tmp_path_factory, "partner-resend")
                )
                page.goto(f"{live_server.url}{reverse('portal:login')}")
                page.fill("#id_username", "alpha")
                page.fill("#id_password", PASSWORD)
                page.click("button[type=submit]")
                page.wait_for_load_state("networkidle")
                journey.open(reverse("portal:deliveries"), "deliveries")
                page.click("a.resend-link >> nth=0")
                page.wait_for_selector("#resend-form")
                journey.snap("lead-failed")
                page.click("#resend-form button[type=submit]")
                page.wait_for_selector("#lead-status")
                journey.snap("lead-resent")
                assert page.inner_text("#lead-status") == "Delivered"
                assert page.locator("#resend-form").count() == 0
            finally:
                browser.close()
        assert healthy.stats()[partner.slug]["posts"] == 1
        assert [text for text in console if "Content Security Policy" in text] == []
    finally:
        failing.stop()
        healthy.stop()
