"""Response headers: a Content-Security-Policy on admin pages, invoice documents and the API
docs; ``Cache-Control: no-store`` on every API and admin response (personal data), except the
public schema and docs."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from billing.invoicing import generate_invoices
from billing.models import Invoice
from consent import vault
from consent.models import Subject
from consent.vault import ApplicantData
from partners.models import Partner
from tests.billing.builders import LeadBuilder, current_period, post, report, schedule
from tests.conftest import partner_client
from tests.factories import PartnerFactory

pytestmark = pytest.mark.django_db


def _policy(response: object) -> dict[str, list[str]]:
    header = response["Content-Security-Policy"]  # type: ignore[index]
    directives = (part.split() for part in header.split(";") if part.strip())
    return {name: values for name, *values in directives}


@pytest.fixture
def staff_client() -> Client:
    user = get_user_model().objects.create_superuser("ops", "ops@example.invalid", "pw-123456!")
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def subject() -> Subject:
    applicant = ApplicantData(
        full_name="王小明",
        phone="+86 138 0013 8000",
        national_id="110101199003071234",
        birth_date=date(1990, 3, 7),
        monthly_income=Decimal("8500.00"),
        employer="Shenzhen Example Tech Co.",
        address="广东省深圳市南山区科技园 1 号",
    )
    return vault.store_subject(applicant=applicant, is_sandbox=False)


@pytest.fixture
def invoice() -> Invoice:
    partner = PartnerFactory()
    schedule(partner)
    lead = LeadBuilder().lead(partner=partner)
    post(lead, report("accepted", timezone.now() - timedelta(hours=2), external_id=f"{lead.id}"))
    (issued,) = generate_invoices(period=current_period(), issue=True)
    return issued


def test_admin_pages_allow_only_their_own_origin_and_no_inline_script(
    staff_client: Client, subject: Subject
) -> None:
    pages = [
        "/admin/",
        "/admin/partners/partner/",
        "/admin/consent/subject/",
        f"/admin/consent/subject/{subject.pk}/change/",
    ]
    for url in [*pages, "/admin/login/"]:
        client = staff_client if url != "/admin/login/" else Client()
        response = client.get(url)
        assert response.status_code == 200, url
        policy = _policy(response)
        assert policy["default-src"] == ["'self'"], url
        assert policy["script-src"] == ["'self'"], url
        assert policy["object-src"] == ["'none'"] and policy["frame-ancestors"] == ["'none'"]
        assert "'unsafe-inline'" not in response["Content-Security-Policy"], url


def test_invoice_documents_run_no_script_and_load_nothing(
    staff_client: Client, invoice: Invoice
) -> None:
    admin_page = staff_client.get(f"/admin/billing/invoice/{invoice.pk}/html/")
    api_page = partner_client(invoice.partner).get(f"/api/v1/partner/invoices/{invoice.pk}/html")
    for response in (admin_page, api_page):
        assert response.status_code == 200
        assert invoice.number in response.content.decode()
        policy = _policy(response)
        assert policy["default-src"] == ["'none'"]  # no script-src: scripts fall back to none
        assert "script-src" not in policy
        assert policy["style-src"] == ["'unsafe-inline'"]  # the template's one <style> block
        assert policy["form-action"] == ["'none'"] and policy["base-uri"] == ["'none'"]


def test_api_docs_load_swagger_ui_from_this_origin_without_inline_script() -> None:
    page = Client().get("/api/docs/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "<script>" not in html  # every script has a src
    assert _policy(page)["script-src"] == ["'self'"]
    script = Client().get("/api/docs/?script=")
    assert script.status_code == 200 and "SwaggerUIBundle" in script.content.decode()


def _no_store(response: object) -> bool:
    directives = {d.strip() for d in response.get("Cache-Control", "").split(",")}  # type: ignore[attr-defined]
    return {"no-store", "private"} <= directives


def test_api_responses_are_never_stored(partner: Partner, source_client: APIClient) -> None:
    client = partner_client(partner)
    responses = {
        "leads": client.get("/api/v1/partner/leads"),
        "me": client.get("/api/v1/partner/me"),
        "consent receipt (404)": source_client.get(
            "/api/v1/consents/00000000-0000-0000-0000-000000000000"
        ),
        "invalid referral (400)": source_client.post("/api/v1/referrals", {}, format="json"),
        "unknown path (404)": client.get("/api/v1/nope"),
        "no key (401)": APIClient().get("/api/v1/partner/leads"),
        "too large (413)": source_client.post(
            "/api/v1/referrals",
            data=b"x" * (settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 1),
            content_type="application/json",
        ),
    }
    assert {name: _no_store(r) for name, r in responses.items()} == dict.fromkeys(responses, True)


def test_admin_pages_and_documents_are_never_stored(
    staff_client: Client, subject: Subject, invoice: Invoice
) -> None:
    for url in [
        "/admin/consent/subject/",
        f"/admin/consent/subject/{subject.pk}/change/",
        f"/admin/billing/invoice/{invoice.pk}/html/",
        "/admin/login/",
    ]:
        assert _no_store(staff_client.get(url)), url
    api_document = partner_client(invoice.partner).get(
        f"/api/v1/partner/invoices/{invoice.pk}/html"
    )
    assert _no_store(api_document)


def test_public_schema_and_docs_may_be_cached() -> None:
    assert not _no_store(Client().get("/api/schema/"))
    assert not _no_store(Client().get("/api/docs/"))
