"""Ops's and finance's journeys through the admin in a real browser (Playwright driving
Debian's chromium, headless, at 1366 px). Ops pause and resume a partner with a reason and
decide a change request; finance generate and issue a period's invoices (the run's progress
page polls its status), record a payment, open it and the partner's statement, and download
an invoice's PDF. Every page visited is saved as a screenshot under the run's output
folder: ``$BROWSER_SCREENSHOTS_DIR`` when set (CI), otherwise pytest's base temporary
directory, in ``screenshots/ops/`` and ``screenshots/finance/``."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import transaction
from django.urls import reverse
from django.utils import timezone

from billing.models import Invoice, InvoiceStatus, PartnerBillingProfile, Payment
from partners import admin_audit, holds, products, webhook_delivery
from partners.keys import issue_api_key
from partners.models import ChangeRequestStatus, HoldReason, PartnerStatus, ProductChangeRequest
from partners.webhook_signing import create_endpoint
from tests.billing.builders import LeadBuilder, current_period, post, report, schedule
from tests.billing.test_invoice_pdf import pdf_text
from tests.browser import CHROMIUM, CHROMIUM_ARGS, VIEWPORT, needs_chromium, screenshot_folder
from tests.browser import Journey as BaseJourney
from tests.factories import PartnerFactory, ProductFactory

PASSWORD = "pw-Admin-Journey-1!"
CHANGE_PAGE = re.compile(r"/change/(\?.*)?$")  # a list's filters may follow

pytestmark = needs_chromium


class Journey(BaseJourney):
    def open(self, path: str, name: str) -> Any:
        response = self.page.goto(self.base_url + path)
        assert response.status == 200, (path, response.status)
        self.snap(name)
        return response

    def messages(self) -> str:
        return (
            str(self.page.inner_text("ul.messagelist"))
            if self.page.query_selector("ul.messagelist")
            else ""
        )

    def sign_in(self, username: str) -> None:
        self.page.goto(f"{self.base_url}/admin/login/")
        self.page.fill("#id_username", username)
        self.page.fill("#id_password", PASSWORD)
        self.page.click("input[type=submit]")
        self.page.wait_for_url(f"{self.base_url}/admin/")
        self.snap("index")


@contextmanager
def _browser(live_server: Any, folder: Path) -> Iterator[tuple[Journey, Any, list[str]]]:
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=os.fspath(CHROMIUM), args=CHROMIUM_ARGS, headless=True
        )
        try:
            context = browser.new_context(viewport=VIEWPORT, accept_downloads=True)
            page = context.new_page()
            console: list[str] = []
            page.on("console", lambda message: console.append(message.text))
            yield Journey(page, live_server.url, folder), context, console
        finally:
            browser.close()


def _user(role: str) -> Any:
    user = get_user_model().objects.create_user(role, password=PASSWORD, is_staff=True)
    user.groups.add(Group.objects.get(name=role))
    return user


def test_ops_pause_and_resume_a_partner_and_decide_a_change_request(
    live_server: Any, monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> None:
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with transaction.atomic():  # live_server: no test transaction around us
        _user("ops")
        partner = PartnerFactory(name="Alpha Lending", status=PartnerStatus.LIVE)
        product = ProductFactory(partner=partner, name="Alpha cash loan", dedupe_days=30)
        issue_api_key(partner=partner)
        create_endpoint(partner=partner, url="https://hooks.alpha-lending.example/webhooks/in")
        webhook_delivery.enqueue(
            partner_id=partner.pk, event_type="lead.delivered", data={"n": 1}, dedupe_key="j:1"
        )
        change = products.propose_change(
            product=product, changes={"dedupe_days": 3}, note="Shorter dedupe, please"
        )

    folder = screenshot_folder(tmp_path_factory, "ops")
    with _browser(live_server, folder) as (journey, _, console):
        page = journey.page
        journey.sign_in("ops")
        journey.open(reverse("admin:partners_partner_changelist"), "partners")
        page.click("text=Alpha Lending")
        page.wait_for_url(CHANGE_PAGE)
        journey.snap("partner")

        # Pause: the reason is required.
        page.click("a.ops-link:has-text('pause routing')")
        journey.snap("pause-form")
        page.click("input[name=_confirm]")
        journey.snap("pause-without-reason")
        assert "This field is required" in page.inner_text("#content-main")
        assert not holds.is_held(partner_id=partner.pk, reason=HoldReason.OPS_PAUSE)
        page.fill("#id_reason", "Post endpoint answering 500 since 09:00")
        page.click("input[name=_confirm]")
        page.wait_for_url(CHANGE_PAGE)
        journey.snap("paused")
        assert "is paused" in journey.messages()
        assert "Paused by ops (all products)" in page.inner_text("#content-main")
        assert holds.is_held(partner_id=partner.pk, reason=HoldReason.OPS_PAUSE)

        page.click("a.ops-link:has-text('resume routing')")
        journey.snap("resume-form")
        page.fill("#id_reason", "Endpoint fixed, confirmed by their on-call")
        page.click("input[name=_confirm]")
        page.wait_for_url(CHANGE_PAGE)
        journey.snap("resumed")
        assert "resumed" in journey.messages()
        assert not holds.is_held(partner_id=partner.pk, reason=HoldReason.OPS_PAUSE)

        # The other lists ops work in fit the screen too.
        for name in ("product", "apikey", "webhookendpoint", "webhookmessage", "trafficsource"):
            journey.open(reverse(f"admin:partners_{name}_changelist"), f"list-{name}")
        journey.open(reverse("admin:partners_partner_history", args=[partner.pk]), "history")
        history = page.inner_text("#content-main")
        assert "running → paused by ops" in history
        assert "Post endpoint answering 500 since 09:00" in history
        assert "Endpoint fixed, confirmed by their on-call" in history

        # The change request, decided from its own page: a rejection needs the note.
        journey.open(reverse("admin:partners_productchangerequest_changelist"), "changes")
        page.click("#result_list tbody tr a")
        page.wait_for_url(CHANGE_PAGE)
        journey.snap("change-request")
        page.click("a.ops-link:has-text('Approve or reject')")
        journey.snap("decide-form")
        assert "dedupe_days" in page.inner_text("#content-main")
        page.check("input[name=decision][value=reject]")
        page.click("input[name=_confirm]")
        journey.snap("reject-without-note")
        assert "Tell the partner why" in page.inner_text("#content-main")
        page.check("input[name=decision][value=reject]")
        page.fill("#id_note", "Our rule is at least 7 days between deliveries")
        page.click("input[name=_confirm]")
        page.wait_for_url(CHANGE_PAGE)
        journey.snap("rejected")
        assert "rejected" in journey.messages()

    change = ProductChangeRequest.objects.get(pk=change.pk)
    assert change.status == ChangeRequestStatus.REJECTED
    assert change.decision_note == "Our rule is at least 7 days between deliveries"
    assert len(admin_audit.history(partner)) == 2
    assert [t for t in console if "Content Security Policy" in t] == []


def test_finance_invoice_a_period_record_a_payment_and_read_the_statement(
    live_server: Any, monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> None:
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with transaction.atomic():
        _user("finance")
        partner = PartnerFactory(name="Bravo Credit", status=PartnerStatus.LIVE)
        schedule(partner)
        issue_api_key(partner=partner)
        create_endpoint(partner=partner, url="https://hooks.bravo-credit.example/partner/hooks")
        PartnerBillingProfile.objects.create(partner=partner)
        builder = LeadBuilder()
        product = ProductFactory(partner=partner, name="Bravo instalment loan")
        for _ in range(3):
            post(
                builder.lead(product=product),
                report("accepted", timezone.now() - timedelta(minutes=5)),
            )
    period = str(current_period())

    with _browser(live_server, screenshot_folder(tmp_path_factory, "finance")) as (
        journey,
        context,
        console,
    ):
        page = journey.page
        journey.sign_in("finance")
        journey.open(reverse("admin:billing_invoice_changelist"), "invoices-empty")
        page.click("#generate-invoices")
        journey.snap("generate-form")
        page.fill("#id_period", period)
        assert page.is_checked("#id_issue")
        page.click("input[name=_confirm]")
        page.wait_for_selector("#invoice-run[data-stage=done]", timeout=30_000)
        journey.snap("run-done")
        invoice = Invoice.objects.get(partner=partner)
        assert invoice.status == InvoiceStatus.ISSUED
        assert invoice.number in page.inner_text("#invoice-run-issued")

        page.click("#invoice-run-list")
        journey.snap("period-invoices")
        assert invoice.number in page.inner_text("#result_list")
        page.click("#result_list tbody tr th a")
        page.wait_for_url(CHANGE_PAGE)
        journey.snap("invoice")
        pdf_href = page.get_attribute("a:has-text('PDF')", "href")
        pdf = context.request.get(journey.base_url + pdf_href)
        assert pdf.status == 200 and pdf.headers["content-type"] == "application/pdf"
        assert invoice.number in pdf_text(pdf.body())

        # Record a payment for the invoice's total, allocated oldest first.
        journey.open(reverse("admin:billing_payment_add"), "payment-form")
        page.select_option("#id_partner", label="Bravo Credit")
        page.select_option("#id_currency", invoice.currency)
        page.fill("#id_amount", str(invoice.total))
        page.fill("#id_received_at_0", timezone.now().strftime("%Y-%m-%d"))
        page.fill("#id_received_at_1", "09:30:00")
        page.fill("#id_bank_reference", "BRAVO-WIRE-0001")
        page.click("input[name=_save]")
        page.wait_for_url(re.compile(r"/billing/payment/(\?.*)?$"))
        journey.snap("payments")
        assert "BRAVO-WIRE-0001 recorded" in journey.messages()
        page.click("#result_list tbody tr a")
        page.wait_for_url(CHANGE_PAGE)
        journey.snap("payment")
        assert invoice.number in page.inner_text("#content-main")

        for name in ("charge", "feeschedule", "creditnote", "returnreview", "exchangerate"):
            journey.open(reverse(f"admin:billing_{name}_changelist"), f"list-{name}")

        profile = PartnerBillingProfile.objects.get(partner=partner)
        journey.open(
            reverse("admin:billing_partnerbillingprofile_change", args=[profile.pk]), "statement"
        )
        statement = page.inner_text(".field-statement")
        assert f"invoiced {invoice.total}" in statement and f"paid {invoice.total}" in statement

    invoice.refresh_from_db()
    assert invoice.status == InvoiceStatus.PAID
    assert Payment.objects.get(bank_reference="BRAVO-WIRE-0001").amount == invoice.total
    assert [t for t in console if "Content Security Policy" in t] == []
