"""The compliance role: read-only access, finding an applicant by blind index, the history
without personal data, and revealing data only with the permission and a reason."""

from __future__ import annotations

import json
import logging

import pytest
from django.contrib.auth.models import Group, User
from django.core.management import call_command
from django.test import Client
from django.urls import reverse

from consent import grants, sequencer
from consent.ledger import verify_ledger
from consent.models import ConsentGrant, LedgerEntry, RevealRecord, Subject
from partners.models import Partner
from tests.consent.conftest import MakeApplicant, MakeGrant
from tests.consent.support import APPLICANT_SECRETS, disclose_to, staff_user

NATIONAL_ID = "110101199003071234"
REASON = "Complaint 2026-114: applicant disputes a disclosure"

VIEW_ONLY_MODELS = [
    "consent_consenttext",
    "consent_consentgrant",
    "consent_consentwithdrawal",
    "consent_disclosure",
    "consent_deletionrequest",
    "consent_ledgerentry",
    "consent_checkpoint",
    "consent_subject",
    "marketplace_referral",
    "marketplace_lead",
]


@pytest.fixture
def history_grant(
    make_grant: MakeGrant, make_applicant: MakeApplicant, partner: Partner
) -> ConsentGrant:
    """A subject with a disclosed, withdrawn, partly acknowledged consent history."""
    from consent import vault

    subject = vault.store_subject(
        applicant=make_applicant(national_id=NATIONAL_ID), is_sandbox=False
    )
    grant = make_grant(partners=[partner], subject=subject)
    disclose_to(grant, [partner])
    grants.withdraw(grant_id=grant.id, channel="api")
    make_grant(partners=[partner], subject=subject)  # a second, still active consent
    return grant


@pytest.fixture
def officer(db: None) -> Client:
    client = Client()
    client.force_login(staff_user("officer", groups=["compliance"]))
    return client


@pytest.fixture
def revealer(db: None) -> Client:
    client = Client()
    client.force_login(
        staff_user("revealer", groups=["compliance"], permissions=["consent.reveal_subject"])
    )
    return client


FIND_URL = "/admin/consent/subject/find/"


def _reveal_url(subject_id: object) -> str:
    return f"/admin/consent/subject/{subject_id}/reveal/"


def test_compliance_group_has_view_permissions_only(db: None) -> None:
    group = Group.objects.get(name="compliance")
    codenames = set(group.permissions.values_list("content_type__app_label", "codename"))

    # Read-only on consent and referral data; starting an export or a verification adds
    # only the job's own record (consent.AuditJob), never a consent record.
    assert all(
        codename.startswith("view_") for _app, codename in codenames - {("consent", "add_auditjob")}
    )
    assert ("consent", "add_auditjob") in codenames
    for dotted in VIEW_ONLY_MODELS:
        app_label, model = dotted.split("_", 1)
        assert (app_label, f"view_{model}") in codenames
    assert ("consent", "reveal_subject") not in codenames
    assert ("consent", "erase_subject") not in codenames


def test_migrate_restores_the_compliance_group_and_its_permissions(db: None) -> None:
    expected = set(Group.objects.get(name="compliance").permissions.all())
    Group.objects.filter(name="compliance").delete()

    call_command("migrate", verbosity=0)

    assert set(Group.objects.get(name="compliance").permissions.all()) == expected


def test_compliance_officer_reads_consent_records_but_cannot_change_them(
    officer: Client, history_grant: ConsentGrant
) -> None:
    for dotted in VIEW_ONLY_MODELS:
        app_label, model = dotted.split("_", 1)
        response = officer.get(reverse(f"admin:{app_label}_{model}_changelist"))
        assert response.status_code == 200, dotted
    assert officer.get(reverse("admin:consent_consenttext_add")).status_code == 403
    changelist = officer.get(reverse("admin:consent_consentgrant_changelist"))
    assert b'value="withdraw_consent"' not in changelist.content


def test_subject_changelist_links_to_find_an_applicant(officer: Client) -> None:
    response = officer.get(reverse("admin:consent_subject_changelist"))

    assert FIND_URL.encode() in response.content


@pytest.mark.parametrize(
    "query", [{"phone": "138 0013 8000"}, {"national_id": NATIONAL_ID.lower()}], ids=str
)
def test_find_by_phone_or_id_shows_the_history_without_personal_data(
    officer: Client,
    history_grant: ConsentGrant,
    partner: Partner,
    query: dict[str, str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    other = Subject.objects.exclude(pk=history_grant.subject_id)
    assert not other.exists()

    response = officer.post(FIND_URL, query)

    assert response.status_code == 200
    html = response.content.decode()
    assert str(history_grant.subject_id) in html
    assert "1 subject(s) match" in html
    assert str(history_grant.id) in html
    assert history_grant.text.version in html and history_grant.text_sha256 in html
    assert partner.name in html  # the disclosure and the deletion request name the partner
    assert "withdrawn" in html and "outstanding" in html
    assert "lead:" in html
    for secret in (*APPLICANT_SECRETS, NATIONAL_ID, *query.values()):
        assert secret not in html
    assert not [s for s in (*APPLICANT_SECRETS, NATIONAL_ID) if s in caplog.text]
    assert "no-store" in response["Cache-Control"]


def test_find_is_post_only_input_and_an_empty_search_finds_nobody(
    officer: Client, history_grant: ConsentGrant
) -> None:
    page = officer.get(FIND_URL, {"phone": "13800138000"})
    empty = officer.post(FIND_URL, {"phone": " ", "national_id": ""})
    unknown = officer.post(FIND_URL, {"phone": "13700000000"})

    assert page.status_code == 200
    assert str(history_grant.subject_id) not in page.content.decode()  # GET never searches
    assert b'method="post"' in page.content
    assert b"Type a phone number or an ID number" in empty.content
    assert str(history_grant.subject_id) not in empty.content.decode()
    assert b"No subject matches" in unknown.content


def test_find_needs_view_permission_on_subjects(db: None) -> None:
    client = Client()
    client.force_login(staff_user("clerk"))

    assert client.post(FIND_URL, {"phone": "13800138000"}).status_code == 403


def test_history_page_by_subject_id_has_no_personal_data(
    officer: Client, history_grant: ConsentGrant
) -> None:
    response = officer.get(
        reverse("admin:consent_subject_history", args=[history_grant.subject_id])
    )

    assert response.status_code == 200
    html = response.content.decode()
    assert str(history_grant.id) in html
    assert not [s for s in (*APPLICANT_SECRETS, NATIONAL_ID) if s in html]
    assert "Reveal decrypted data" not in html  # the officer lacks the permission


def test_reveal_without_the_permission_is_forbidden_and_logs_nothing(
    officer: Client, history_grant: ConsentGrant
) -> None:
    url = _reveal_url(history_grant.subject_id)

    assert officer.get(url).status_code == 403
    response = officer.post(url, {"personal_fields": ["full_name"], "reason": REASON})

    assert response.status_code == 403
    assert "王小明" not in response.content.decode()
    assert not RevealRecord.objects.exists()
    assert not LedgerEntry.objects.filter(kind="data.revealed").exists()


@pytest.mark.parametrize("reason", ["", "too short"])
def test_reveal_without_a_real_reason_is_refused(
    revealer: Client, history_grant: ConsentGrant, reason: str
) -> None:
    response = revealer.post(
        _reveal_url(history_grant.subject_id), {"personal_fields": ["full_name"], "reason": reason}
    )

    assert response.status_code == 400
    assert "王小明" not in response.content.decode()
    assert not RevealRecord.objects.exists()
    assert not LedgerEntry.objects.filter(kind="data.revealed").exists()


def test_reveal_with_permission_and_reason_shows_the_data_once_and_is_recorded(
    revealer: Client, history_grant: ConsentGrant, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    url = _reveal_url(history_grant.subject_id)

    response = revealer.post(url, {"personal_fields": ["full_name", "phone"], "reason": REASON})

    assert response.status_code == 200
    html = response.content.decode()
    assert "王小明" in html and "+86 138 0013 8000" in html
    assert "广东省" not in html  # only the fields asked for
    assert "no-store" in response["Cache-Control"]
    record = RevealRecord.objects.get()
    assert record.user.username == "revealer"
    assert record.subject_id == history_grant.subject_id
    assert (record.fields, record.reason) == (["full_name", "phone"], REASON)
    sequencer.sequence_pending()
    (entry,) = LedgerEntry.objects.filter(kind="data.revealed")
    data = json.loads(entry.canonical)["data"]
    assert data["reveal_id"] == str(record.id)
    assert data["fields"] == ["full_name", "phone"]
    assert REASON not in entry.canonical
    assert not [s for s in APPLICANT_SECRETS if s in entry.canonical]
    assert not [s for s in (*APPLICANT_SECRETS, NATIONAL_ID) if s in caplog.text]
    assert verify_ledger().ok

    # The reveal is part of the history; the data is not.
    history = revealer.get(
        reverse("admin:consent_subject_history", args=[history_grant.subject_id])
    ).content.decode()
    assert "revealer" in history and "王小明" not in history


def test_superuser_can_reveal_and_reveal_records_list_shows_no_data(
    history_grant: ConsentGrant,
) -> None:
    client = Client()
    client.force_login(User.objects.create_superuser("root", "root@example.invalid", "pw-1234!"))

    shown = client.post(
        _reveal_url(history_grant.subject_id), {"personal_fields": ["address"], "reason": REASON}
    )
    listed = client.get(reverse("admin:consent_revealrecord_changelist"))

    assert "广东省深圳市南山区科技园 1 号" in shown.content.decode()
    assert listed.status_code == 200
    assert "广东省" not in listed.content.decode()


def test_find_page_offers_reveal_only_to_those_allowed(
    officer: Client, revealer: Client, history_grant: ConsentGrant
) -> None:
    without = officer.post(FIND_URL, {"national_id": NATIONAL_ID}).content.decode()
    with_permission = revealer.post(FIND_URL, {"national_id": NATIONAL_ID}).content.decode()

    assert _reveal_url(history_grant.subject_id) not in without
    assert _reveal_url(history_grant.subject_id) in with_permission
