"""What the portal's pages do for partner staff: leads and their CSV (anonymised), invoice
and credit-note PDFs, returns, API keys shown once, webhook secrets shown once and replays,
deletion acknowledgements recorded with the user, the funnel, and the login page."""

from __future__ import annotations

import csv
import io
import json
from datetime import timedelta
from decimal import Decimal

import pytest
from django.conf import settings
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from billing import returns
from billing.charging import decide_return
from billing.models import Invoice, PartnerBillingProfile, ReturnReview
from consent.models import LedgerEntry
from marketplace.models import Lead, LeadEvent
from partners.keys import authenticate_key, hash_key
from partners.models import ApiKey, MessageStatus, WebhookMessage
from partners.secretbox import unseal
from portal.models import PortalAction
from tests.billing.test_invoice_pdf import pdf_text
from tests.portal.conftest import PASSWORD, World, client_for

# What the applicant's post carried (tests/billing/builders.py): never on a portal page.
PERSONAL = ["Li Na", "139 0000 0000", "Keji Road", "Example Tech", "110101199003"]


def _body(response: object) -> str:
    if hasattr(response, "streaming_content"):
        return b"".join(response.streaming_content).decode()  # type: ignore[attr-defined]
    return response.content.decode()  # type: ignore[attr-defined]


def test_lead_pages_show_anonymised_attributes_and_no_personal_data(world: World) -> None:
    client = client_for(world.users["alpha"])
    listing = _body(client.get(reverse("portal:leads")))
    detail = _body(client.get(reverse("portal:lead_detail", kwargs={"lead_id": world.a.lead.pk})))
    for page in (listing, detail):
        assert "R5" in page and "CN-GD" in page and "35-44" in page and "5000-9999" in page
        for value in PERSONAL:
            assert value not in page
    assert str(world.a.lead.pk) in listing and str(world.b.lead.pk) not in listing
    assert str(world.a.sandbox_lead.pk) not in listing  # live mode


def test_leads_are_newest_first_and_filter_by_status_and_date(world: World) -> None:
    client = client_for(world.users["alpha"])
    Lead.objects.filter(pk=world.a.lead.pk).update(created_at=timezone.now() - timedelta(days=9))
    listing = _body(client.get(reverse("portal:leads")))
    assert listing.index(str(world.a.returned_lead.pk)) < listing.index(str(world.a.lead.pk))
    returned = _body(client.get(reverse("portal:leads"), {"status": "returned"}))
    assert str(world.a.returned_lead.pk) in returned and str(world.a.lead.pk) not in returned
    since = (timezone.now() - timedelta(days=3)).date().isoformat()
    recent = _body(client.get(reverse("portal:leads"), {"created_from": since}))
    assert str(world.a.returned_lead.pk) in recent and str(world.a.lead.pk) not in recent
    bad = client.get(reverse("portal:leads"), {"created_from": "2026-13-45"})
    assert bad.status_code == 400


def test_csv_export_streams_the_partners_leads_without_personal_data(world: World) -> None:
    client = client_for(world.users["alpha"])
    response = client.get(reverse("portal:leads_csv"))
    assert response.status_code == 200 and response.streaming
    assert response["Content-Type"].startswith("text/csv")
    text = _body(response)
    rows = list(csv.DictReader(io.StringIO(text)))
    assert {row["lead_id"] for row in rows} == {str(world.a.lead.pk), str(world.a.returned_lead.pk)}
    by_id = {row["lead_id"]: row for row in rows}
    row = by_id[str(world.a.lead.pk)]
    assert row["status"] == "accepted" and row["mode"] == "live"
    assert (row["loan_amount"], row["loan_currency"], row["term_months"]) == (
        "8000.00",
        "CNY",
        "12",
    )
    assert (row["risk_tier"], row["region"], row["age_band"], row["income_band"]) == (
        "R5",
        "CN-GD",
        "35-44",
        "5000-9999",
    )
    assert by_id[str(world.a.returned_lead.pk)]["status"] == "returned"
    for value in PERSONAL:
        assert value not in text
    # The filter applies to the export too; sandbox mode exports sandbox leads only.
    filtered = _body(client.get(reverse("portal:leads_csv"), {"status": "returned"}))
    assert str(world.a.lead.pk) not in filtered and str(world.a.returned_lead.pk) in filtered
    client.post(reverse("portal:set_mode"), {"mode": "sandbox"})
    sandbox = list(csv.DictReader(io.StringIO(_body(client.get(reverse("portal:leads_csv"))))))
    assert [row["lead_id"] for row in sandbox] == [str(world.a.sandbox_lead.pk)]


def test_invoice_and_credit_note_pdfs_read_their_numbers(world: World) -> None:
    client = client_for(world.users["alpha"])
    listing = _body(client.get(reverse("portal:invoices")))
    assert world.a.invoice.number in listing and world.b.invoice.number not in listing
    response = client.get(reverse("portal:invoice_pdf", kwargs={"invoice_id": world.a.invoice.pk}))
    assert response["Content-Type"] == "application/pdf"
    assert f'filename="{world.a.invoice.number}.pdf"' in response["Content-Disposition"]
    text = pdf_text(response.content)
    assert world.a.invoice.number in text and "Alpha Lending" in text
    assert world.b.invoice.number not in text
    note = client.get(reverse("portal:credit_note_pdf", kwargs={"note_id": world.a.credit_note.pk}))
    assert world.a.credit_note.number in pdf_text(note.content)


def test_draft_invoices_and_sandbox_mode_show_no_billing(world: World) -> None:
    client = client_for(world.users["alpha"])
    draft = Invoice.objects.filter(partner=world.a.partner, status="draft").first()
    if draft is not None:
        url = reverse("portal:invoice_detail", kwargs={"invoice_id": draft.pk})
        assert client.get(url).status_code == 404
    client.post(reverse("portal:set_mode"), {"mode": "sandbox"})
    assert world.a.invoice.number not in _body(client.get(reverse("portal:invoices")))
    assert "ALPHA-REF-11" not in _body(client.get(reverse("portal:payments")))
    url = reverse("portal:invoice_pdf", kwargs={"invoice_id": world.a.invoice.pk})
    assert client.get(url).status_code == 404


def test_statement_and_payments_are_the_partners_own(world: World) -> None:
    client = client_for(world.users["alpha"])
    payments = _body(client.get(reverse("portal:payments")))
    assert "ALPHA-REF-11" in payments and "BRAVO-REF-77" not in payments
    assert world.a.invoice.number in payments  # allocated to it
    statement = client.get(reverse("portal:statement"), {"currency": "CNY"})
    assert statement.status_code == 200
    assert statement.context["statement"].partner_id == world.a.partner.pk
    assert client.get(reverse("portal:statement"), {"currency": "XXX"}).status_code == 400


def test_a_return_goes_through_the_events_path_once_and_shows_its_status(world: World) -> None:
    client = client_for(world.users["alpha"])
    url = reverse("portal:lead_return", kwargs={"lead_id": world.a.lead.pk})
    form_id = "0a3c9a56-2f7c-4d1e-9a57-0c7f6c1b2f10"
    for _ in range(2):  # the form posted twice is one return
        response = client.post(url, {"reason": "invalid_contact", "form_id": form_id})
        assert response.status_code == 302
    (event,) = LeadEvent.objects.filter(lead=world.a.lead, type="returned")
    assert (event.reason, event.external_id) == ("invalid_contact", f"portal-{form_id}")
    world.a.lead.refresh_from_db()
    assert world.a.lead.status == "returned"
    assert world.a.lead.charges.filter(entry_type="credit").exists()  # credited at once
    action = PortalAction.objects.get(kind="return_requested")
    assert (action.user, action.partner, action.target) == (
        world.users["alpha"],
        world.a.partner,
        str(world.a.lead.pk),
    )
    page = _body(client.get(reverse("portal:returns")))
    assert str(world.a.lead.pk)[:10] in page and "Accepted: credited" in page
    detail = _body(client.get(reverse("portal:lead_detail", kwargs={"lead_id": world.a.lead.pk})))
    assert 'id="return-form"' not in detail and "has been returned" in detail
    # A second return by a hand-made post: whatever the events path says, never a 500.
    again = client.post(
        url, {"reason": "duplicate", "form_id": "9a3c9a56-2f7c-4d1e-9a57-0c7f6c1b2f10"}
    )
    assert again.status_code in (302, 409, 422)


def test_a_return_waiting_for_review_shows_it_and_its_decision(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = client_for(world.users["alpha"])
    url = reverse("portal:lead_return", kwargs={"lead_id": world.a.lead.pk})
    # Over the return-rate cap from the first lead: the return waits for finance.
    PartnerBillingProfile.objects.update_or_create(
        partner=world.a.partner, defaults={"return_rate_cap": Decimal("0")}
    )
    monkeypatch.setattr(returns, "MIN_LEADS_FOR_CAP", 0)
    form_id = "1b3c9a56-2f7c-4d1e-9a57-0c7f6c1b2f10"
    client.post(url, {"reason": "fraud_suspected", "form_id": form_id})
    review = ReturnReview.objects.get(lead=world.a.lead)
    assert review.status == "pending"
    assert not world.a.lead.charges.filter(entry_type="credit").exists()
    detail = reverse("portal:lead_detail", kwargs={"lead_id": world.a.lead.pk})
    assert "Under review" in _body(client.get(detail))
    decide_return(review_id=review.pk, approve=False, note="Contact details were valid")
    page = _body(client.get(detail))
    assert "Rejected" in page and "Contact details were valid" in page


def test_a_bad_reason_code_or_a_closed_window_is_a_form_error(world: World) -> None:
    client = client_for(world.users["alpha"])
    url = reverse("portal:lead_return", kwargs={"lead_id": world.a.lead.pk})
    form_id = "2c3c9a56-2f7c-4d1e-9a57-0c7f6c1b2f10"
    assert client.post(url, {"reason": "made-up", "form_id": form_id}).status_code == 400
    Lead.objects.filter(pk=world.a.lead.pk).update(
        delivered_at=timezone.now() - timedelta(days=settings.RETURN_WINDOW_DAYS + 3)
    )
    response = client.post(url, {"reason": "duplicate", "form_id": form_id})
    assert response.status_code == 422
    assert "within" in _body(response)
    assert not LeadEvent.objects.filter(lead=world.a.lead, type="returned").exists()


def test_a_new_key_is_shown_once_and_works(world: World) -> None:
    client = client_for(world.users["alpha"])
    response = client.post(reverse("portal:key_create"), {"name": "staging", "mode": "sandbox"})
    assert response.status_code == 200
    issued = response.context["issued"]
    plaintext = issued.plaintext
    assert plaintext in _body(response)
    stored = ApiKey.objects.get(pk=issued.api_key.pk)
    assert (stored.partner, stored.mode, stored.name) == (world.a.partner, "sandbox", "staging")
    assert stored.key_hash == hash_key(plaintext) and plaintext not in stored.key_hash
    key = authenticate_key(plaintext)
    assert key is not None and key.pk == stored.pk
    # Never again: not on the list, not on the status page.
    for name in ("keys", "home"):
        assert plaintext not in _body(client.get(reverse(f"portal:{name}")))
        assert stored.prefix in _body(client.get(reverse("portal:keys")))
    client.post(reverse("portal:key_revoke", kwargs={"key_id": stored.pk}))
    assert authenticate_key(plaintext) is None
    assert PortalAction.objects.filter(kind="key_revoked", target=stored.prefix).exists()
    assert client.post(reverse("portal:key_create"), {"mode": "root"}).status_code == 400


def test_secret_rotation_is_shown_once_and_signs(world: World) -> None:
    client = client_for(world.users["alpha"])
    endpoint = world.a.endpoint
    response = client.post(reverse("portal:webhook_rotate", kwargs={"endpoint_id": endpoint.pk}))
    secret = response.context["secret"]
    assert secret.startswith("whsec_") and secret in _body(response)
    endpoint.refresh_from_db()
    assert unseal(endpoint.secret_encrypted) == secret
    assert endpoint.previous_secret_expires_at is not None
    assert secret not in _body(client.get(reverse("portal:webhooks")))


def test_webhook_url_change_is_checked(world: World, settings: object) -> None:
    client = client_for(world.users["alpha"])
    url = reverse("portal:webhook_url")
    assert client.post(url, {"url": "ftp://example.invalid/x"}).status_code == 400
    settings.ALLOW_PRIVATE_PARTNER_URLS = False  # type: ignore[attr-defined]
    response = client.post(url, {"url": "https://127.0.0.1/hooks"})
    assert response.status_code == 400
    world.a.endpoint.refresh_from_db()
    assert world.a.endpoint.url == "http://127.0.0.1:9/alpha-lending/hooks"


def test_a_webhook_message_is_replayed_from_the_start(world: World) -> None:
    client = client_for(world.users["alpha"])
    WebhookMessage.objects.filter(pk=world.a.message.pk).update(
        status=MessageStatus.FAILED, attempts=9, next_attempt_at=None
    )
    url = reverse("portal:message_replay", kwargs={"message_id": world.a.message.pk})
    assert client.post(url).status_code == 302
    message = WebhookMessage.objects.get(pk=world.a.message.pk)
    # Delivery ran at commit (eager) against a closed port: a fresh schedule, attempt one.
    assert message.attempts <= 1 and message.status == MessageStatus.PENDING
    assert PortalAction.objects.filter(kind="webhook_replayed", target=message.pk).exists()
    log = _body(client.get(reverse("portal:deliveries")))
    assert str(world.a.lead.pk)[:10] in log and "140 ms" in log


def test_acknowledging_a_deletion_is_the_apis_acknowledgement_with_the_user(
    world: World,
) -> None:
    client = client_for(world.users["alpha"])
    page = _body(client.get(reverse("portal:withdrawals")))
    assert str(world.a.deletion.withdrawal_id) in page and "Outstanding" in page
    url = reverse("portal:withdrawal_ack", kwargs={"withdrawal_id": world.a.deletion.withdrawal_id})
    assert client.post(url).status_code == 302
    assert client.post(url).status_code == 302  # again: a no-op
    world.a.deletion.refresh_from_db()
    assert world.a.deletion.acknowledged_at is not None
    entries = [
        json.loads(entry.body or entry.canonical or "{}")
        for entry in LedgerEntry.objects.filter(kind="deletion.acknowledged")
    ]
    assert len(entries) == 1
    data = entries[0]["data"]
    assert data["partner_id"] == str(world.a.partner.pk)
    assert data["staff_user"] == {
        "id": str(world.users["alpha"].pk),
        "username": "alpha",
    }
    assert PortalAction.objects.filter(kind="deletion_acknowledged").count() == 1


def test_funnel_counts_the_partners_leads_by_stage_and_status(world: World) -> None:
    client = client_for(world.users["alpha"])
    response = client.get(reverse("portal:stats"))
    funnel = response.context["funnel"]
    assert (funnel.leads, funnel.delivered) == (2, 2)
    assert dict(funnel.stages) == {"Accepted": 2, "Approved": 0, "Funded": 0, "Returned": 1}
    assert {label: n for label, n in funnel.by_status if n} == {"Accepted": 1, "Returned": 1}
    old = (timezone.now() - timedelta(days=90)).date()
    response = client.get(
        reverse("portal:stats"), {"since": old.isoformat(), "until": old.isoformat()}
    )
    assert response.context["funnel"].leads == 0
    assert (
        client.get(
            reverse("portal:stats"), {"since": "2026-12-01", "until": "2020-01-01"}
        ).status_code
        == 400
    )


def test_the_status_page_shows_mode_status_and_what_waits(world: World) -> None:
    client = client_for(world.users["alpha"])
    page = _body(client.get(reverse("portal:home")))
    assert "Alpha Lending" in page and "Live" in page and "Bravo" not in page
    client.post(reverse("portal:set_mode"), {"mode": "sandbox"})
    page = _body(client.get(reverse("portal:home")))
    assert "nothing is billed" in page


def test_login_page_signs_partner_staff_in_and_locks_out_guessing(world: World) -> None:
    client = Client()
    login = reverse("portal:login")
    assert client.get(login).status_code == 200
    response = client.post(login, {"username": "alpha", "password": PASSWORD})
    assert response.status_code == 302 and response["Location"] == reverse("portal:home")
    assert client.get(reverse("portal:home")).status_code == 200
    guesser = Client()
    for _ in range(settings.AXES_FAILURE_LIMIT):
        guesser.post(login, {"username": "bravo", "password": "wrong"}, REMOTE_ADDR="192.0.2.9")
    locked = guesser.post(
        login, {"username": "bravo", "password": PASSWORD}, REMOTE_ADDR="192.0.2.9"
    )
    assert locked.status_code == 429


def test_a_partner_without_an_endpoint_creates_one_and_sees_its_secret_once(
    world: World,
) -> None:
    client = client_for(world.users["alpha"])
    WebhookMessage.objects.filter(partner=world.a.partner).delete()
    world.a.endpoint.delete()
    response = client.post(reverse("portal:webhook_url"), {"url": "http://127.0.0.1:9/fresh"})
    secret = response.context["secret"]
    assert secret.startswith("whsec_") and secret in _body(response)
    (endpoint,) = world.a.partner.webhooks.all()
    assert endpoint.url == "http://127.0.0.1:9/fresh"
    assert unseal(endpoint.secret_encrypted) == secret
    assert secret not in _body(client.get(reverse("portal:webhooks")))
    # Changing the URL later keeps the endpoint and its secret.
    client.post(reverse("portal:webhook_url"), {"url": "http://127.0.0.1:9/moved"})
    endpoint.refresh_from_db()
    assert endpoint.url == "http://127.0.0.1:9/moved"
    assert unseal(endpoint.secret_encrypted) == secret
