"""Compliance's workplace in the admin, without a shell: withdraw a consent (with a reason
and a confirmation, through consent's own withdrawal), export an audit bundle as a download
(only to the officer who asked; it verifies offline), verify the ledger (the same report as
``verify_consent_ledger``, tampering named), and the roles' groups made by a migration."""

from __future__ import annotations

import importlib
import io
import json
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest
from django.apps import apps as global_apps
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import Group, User
from django.db import connection
from django.test import Client
from django.urls import reverse

from consent import audit_jobs, ledger, tasks
from consent.models import (
    AuditJob,
    ConsentGrant,
    ConsentWithdrawal,
    DeletionRequest,
    LedgerEntry,
)
from partners.models import Partner, WebhookMessage
from partners.roles import ROLES
from partners.webhook_signing import create_endpoint
from tests.consent.conftest import MakeGrant
from tests.consent.support import APPLICANT_SECRETS, disclose_to, staff_user
from tests.consent.test_ledger_tamper import _flip_one_character, _sql, built_ledger
from tests.factories import PartnerFactory

__all__ = ["built_ledger"]  # the tamper tests' ledger, used as a fixture here

REASON = "Applicant withdrew by phone, ticket 2026-311"
WITHDRAW = "consent.add_consentwithdrawal"


@pytest.fixture(autouse=True)
def _var_dir(settings: Any, tmp_path: Path) -> Path:
    settings.VAR_DIR = tmp_path / "var"
    return settings.VAR_DIR


def _client(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def officer(db: None) -> User:
    return staff_user("officer", groups=["compliance"])


@pytest.fixture
def disclosed(make_grant: MakeGrant) -> tuple[ConsentGrant, list[Partner]]:
    partners = [PartnerFactory(name="Alpha Lending"), PartnerFactory(name="Beta Credit")]
    for partner in partners:
        create_endpoint(partner=partner, url=f"https://{partner.slug}.example.invalid/hooks")
    grant = make_grant(partners=partners)
    disclose_to(grant, partners)
    return grant, partners


# --- Withdrawing ----------------------------------------------------------------------------


def test_a_compliance_officer_needs_the_permission_given_on_purpose_to_withdraw(
    officer: User, disclosed: tuple[ConsentGrant, list[Partner]]
) -> None:
    grant, _ = disclosed
    client = _client(officer)
    url = reverse("admin:consent_consentgrant_withdraw", args=[grant.pk])
    history = client.get(reverse("admin:consent_subject_history", args=[grant.subject_id]))

    assert history.status_code == 200
    assert url not in history.content.decode()  # not offered
    assert client.get(url).status_code == 403
    assert client.post(url, {"reason": REASON, "confirm": "on"}).status_code == 403
    assert not ConsentWithdrawal.objects.exists()


def test_withdrawing_asks_for_a_reason_and_a_confirmation_then_withdraws_through_consent(
    disclosed: tuple[ConsentGrant, list[Partner]],
) -> None:
    grant, partners = disclosed
    user = staff_user("withdrawer", groups=["compliance"], permissions=[WITHDRAW])
    client = _client(user)
    history_url = reverse("admin:consent_subject_history", args=[grant.subject_id])
    url = reverse("admin:consent_consentgrant_withdraw", args=[grant.pk])
    assert url in client.get(history_url).content.decode()

    page = client.get(url)
    body = page.content.decode()
    assert page.status_code == 200
    assert "Alpha Lending" in body and "Beta Credit" in body  # who will be asked to delete
    assert not any(secret in body for secret in APPLICANT_SECRETS)
    for missing in ({"reason": REASON}, {"confirm": "on"}, {"reason": "no", "confirm": "on"}):
        refused = client.post(url, missing)
        assert refused.status_code == 400
        assert refused.context["form"].errors
    assert not ConsentWithdrawal.objects.exists()

    done = client.post(url, {"reason": REASON, "confirm": "on"}, follow=True)

    assert done.redirect_chain[-1][0] == history_url
    assert "Withdrew consent" in done.content.decode()
    assert "2 partner(s)" in done.content.decode()
    withdrawal = ConsentWithdrawal.objects.get(grant=grant)
    assert (withdrawal.channel, withdrawal.reason) == ("admin", REASON)
    entry = LedgerEntry.objects.get(kind="consent.withdrawn")
    data = json.loads(entry.canonical or entry.body or "{}")["data"]
    assert data["receipt_id"] == str(grant.pk)
    assert data["staff_user"] == {"id": str(user.pk), "username": "withdrawer"}
    assert set(DeletionRequest.objects.values_list("partner_id", flat=True)) == {
        p.pk for p in partners
    }
    messages = WebhookMessage.objects.filter(event_type="consent.withdrawn")
    assert set(messages.values_list("partner_id", flat=True)) == {p.pk for p in partners}
    log = LogEntry.objects.get(object_id=str(grant.pk))
    assert log.user_id == user.pk
    assert f"withdrawal {withdrawal.pk}" in log.get_change_message()

    again = client.post(url, {"reason": REASON, "confirm": "on"})
    assert again.status_code == 200 and "already-withdrawn" in again.content.decode()
    assert ConsentWithdrawal.objects.count() == 1
    assert LedgerEntry.objects.filter(kind="consent.withdrawn").count() == 1


# --- Exports ----------------------------------------------------------------------------------


def _export(
    client: Client, django_capture_on_commit_callbacks: Any, **form: str
) -> tuple[AuditJob, Any]:
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(reverse("admin:consent_auditjob_export"), form)
    assert response.status_code == 302, response.content.decode()[:2000]
    job = AuditJob.objects.get(pk=response["Location"].rstrip("/").split("/")[-2])
    return job, response


def test_an_export_runs_as_a_job_and_downloads_a_bundle_that_verifies_offline(
    officer: User,
    disclosed: tuple[ConsentGrant, list[Partner]],
    django_capture_on_commit_callbacks: Any,
    tmp_path: Path,
) -> None:
    grant, _ = disclosed
    ledger.make_checkpoint()
    client = _client(officer)
    assert client.get(reverse("admin:consent_auditjob_export")).status_code == 200

    job, response = _export(
        client, django_capture_on_commit_callbacks, subject=str(grant.subject_id)
    )

    assert response["Location"] == reverse("admin:consent_auditjob_progress", args=[job.pk])
    assert (job.kind, job.state, job.requested_by_id) == ("export", "done", officer.pk)
    assert job.result["entries"] == job.done == job.total > 0
    status = client.get(reverse("admin:consent_auditjob_status", args=[job.pk])).json()
    assert status == {
        "state": "done",
        "done": job.done,
        "total": job.total,
        "finished": True,
        "error": "",
    }
    page = client.get(response["Location"]).content.decode()
    download_url = reverse("admin:consent_auditjob_download", args=[job.pk])
    assert download_url in page and ledger.public_key_id()[:4] in page

    download = client.get(download_url)
    assert download.status_code == 200
    assert download["Content-Type"] == "application/zip"
    assert "no-store" in download["Cache-Control"]
    content = b"".join(download.streaming_content)
    folder = tmp_path / "bundle"
    zipfile.ZipFile(io.BytesIO(content)).extractall(folder)
    assert not any(secret.encode() in content for secret in APPLICANT_SECRETS)
    key = job.result["public_key"]
    checked = subprocess.run(
        [sys.executable, folder / "verify_bundle.py", folder, "--public-key", key],
        capture_output=True,
        text=True,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "OK" in checked.stdout
    assert audit_jobs.bundle_file(job).is_file()


def test_only_the_officer_who_asked_gets_the_bundle_its_page_and_its_status(
    officer: User,
    disclosed: tuple[ConsentGrant, list[Partner]],
    django_capture_on_commit_callbacks: Any,
) -> None:
    grant, _ = disclosed
    ledger.make_checkpoint()
    job, _ = _export(
        _client(officer), django_capture_on_commit_callbacks, subject=str(grant.subject_id)
    )
    progress_url = reverse("admin:consent_auditjob_progress", args=[job.pk])
    colleague = staff_user("colleague", groups=["compliance"])
    boss = User.objects.create_superuser("boss", "boss@example.invalid", "pw-123456!")
    for other in (colleague, boss):
        client = _client(other)
        for name in ("download", "progress", "status"):
            url = reverse(f"admin:consent_auditjob_{name}", args=[job.pk])
            assert client.get(url).status_code == 403, (other, name)
        # The job's record (who asked, when, the outcome) is the audit trail all may read,
        # without a link to a page that is not theirs.
        listing = client.get(reverse("admin:consent_auditjob_changelist"))
        assert listing.status_code == 200
        assert str(job.pk) in listing.content.decode()
        assert progress_url not in listing.content.decode()
    mine = _client(officer).get(reverse("admin:consent_auditjob_changelist")).content.decode()
    assert progress_url in mine


def test_export_form_errors_are_per_field_and_start_nothing(
    officer: User, django_capture_on_commit_callbacks: Any
) -> None:
    client = _client(officer)
    url = reverse("admin:consent_auditjob_export")
    cases = [
        ({}, "Give a subject id or a time range."),
        ({"subject": "not-a-uuid"}, "Enter a valid UUID."),
        ({"since": "2026-01-02"}, "A time range needs both ends."),
        ({"since": "2026-01-02", "until": "2026-01-01"}, "The range must start before it ends."),
        ({"subject": "00000000-0000-4000-8000-000000000000"}, "No subject has this id."),
    ]
    for form, message in cases:
        with django_capture_on_commit_callbacks(execute=True):
            response = client.post(url, form)
        assert response.status_code == 400, form
        assert message in response.content.decode(), form
    assert not AuditJob.objects.exists()


def test_an_export_without_a_checkpoint_fails_with_a_plain_message(
    officer: User,
    disclosed: tuple[ConsentGrant, list[Partner]],
    django_capture_on_commit_callbacks: Any,
) -> None:
    grant, _ = disclosed
    client = _client(officer)
    job, response = _export(
        client, django_capture_on_commit_callbacks, subject=str(grant.subject_id)
    )

    assert job.state == "failed"
    assert "no signed checkpoint" in job.error
    assert "no signed checkpoint" in client.get(response["Location"]).content.decode()
    download = reverse("admin:consent_auditjob_download", args=[job.pk])
    assert client.get(download).status_code == 404


def test_a_time_range_export_takes_the_entries_recorded_in_it(
    officer: User,
    disclosed: tuple[ConsentGrant, list[Partner]],
    django_capture_on_commit_callbacks: Any,
) -> None:
    ledger.make_checkpoint()
    job, _ = _export(
        _client(officer),
        django_capture_on_commit_callbacks,
        since="2000-01-01 00:00",
        until="2100-01-01 00:00",
    )
    assert job.state == "done"
    assert job.result["entries"] == LedgerEntry.objects.filter(seq__isnull=False).count()


# --- Verifying --------------------------------------------------------------------------------


def _verify(client: Client, django_capture_on_commit_callbacks: Any) -> tuple[AuditJob, str]:
    assert client.get(reverse("admin:consent_auditjob_verify")).status_code == 200
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(reverse("admin:consent_auditjob_verify"))
    assert response.status_code == 302
    job = AuditJob.objects.latest("created_at")
    return job, client.get(response["Location"]).content.decode()


def test_verifying_from_the_admin_reports_an_intact_ledger(
    officer: User, built_ledger: None, django_capture_on_commit_callbacks: Any
) -> None:
    job, page = _verify(_client(officer), django_capture_on_commit_callbacks)

    expected = ledger.verify_ledger()
    assert job.result["ok"] is True
    assert job.result["entries_checked"] == expected.entries_checked == 50
    assert job.result["checkpoints_checked"] == expected.checkpoints_checked == 3
    assert job.done == job.total == 50
    assert "Consent ledger OK" in page and "50 entries and 3 signed checkpoints" in page


def test_verifying_from_the_admin_names_the_tampered_entry(
    officer: User, built_ledger: None, django_capture_on_commit_callbacks: Any
) -> None:
    seq = LedgerEntry.objects.filter(kind="data.disclosed").order_by("seq")[1].seq
    assert seq is not None
    canonical = LedgerEntry.objects.get(seq=seq).canonical or ""
    _sql(
        "UPDATE consent_ledgerentry SET canonical = %s WHERE seq = %s",
        [_flip_one_character(canonical, seq), seq],
    )

    job, page = _verify(_client(officer), django_capture_on_commit_callbacks)

    assert job.state == "done" and job.result["ok"] is False
    assert job.result["first_bad_seq"] == seq
    assert "FAILED" in page
    assert f"TAMPERED: entry {seq}: content does not match its stored leaf hash" in page


def test_staff_without_the_role_cannot_start_exports_or_verifications(db: None) -> None:
    client = _client(staff_user("ops-person", groups=["ops"]))
    for name in ("export", "verify"):
        url = reverse(f"admin:consent_auditjob_{name}")
        assert client.get(url).status_code == 403
        assert client.post(url).status_code == 403
    assert not AuditJob.objects.exists()


def test_a_redelivered_job_does_no_work_twice(
    officer: User, built_ledger: None, django_capture_on_commit_callbacks: Any
) -> None:
    job, _ = _verify(_client(officer), django_capture_on_commit_callbacks)
    finished = job.finished_at
    again = audit_jobs.run(job_id=job.pk)
    assert (again.state, again.finished_at) == ("done", finished)


# --- Roles ------------------------------------------------------------------------------------


def test_the_role_groups_are_created_by_a_migration(db: None) -> None:
    migration = importlib.import_module("partners.migrations.0011_role_groups")
    Group.objects.all().delete()

    class Editor:
        connection = connection

    migration.create_groups(global_apps, Editor())

    assert set(Group.objects.values_list("name", flat=True)) == set(ROLES)


def test_a_new_compliance_user_sees_the_consent_workplace_on_the_admin_index(db: None) -> None:
    client = _client(staff_user("newcomer", groups=["compliance"]))
    index = client.get(reverse("admin:index")).content.decode()

    assert "have permission to view or edit anything" not in index
    for name in ("subject", "consentgrant", "ledgerentry", "checkpoint", "auditjob"):
        assert reverse(f"admin:consent_{name}_changelist") in index
    subjects = client.get(reverse("admin:consent_subject_changelist")).content.decode()
    for name in ("consent_subject_find", "consent_auditjob_export", "consent_auditjob_verify"):
        assert reverse(f"admin:{name}") in subjects


def test_a_job_lost_with_the_broker_stays_queued_and_can_be_queued_again(
    officer: User,
    disclosed: tuple[ConsentGrant, list[Partner]],
    django_capture_on_commit_callbacks: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    grant, _ = disclosed
    ledger.make_checkpoint()
    client = _client(officer)

    def broker_down(job_id: str) -> None:
        raise ConnectionError("broker unreachable")

    monkeypatch.setattr(tasks.run_audit_job, "delay", broker_down)
    job, response = _export(
        client, django_capture_on_commit_callbacks, subject=str(grant.subject_id)
    )
    assert job.state == "queued"  # the officer's request did not fail
    page = client.get(response["Location"]).content.decode()
    assert "requeue-form" in page
    monkeypatch.undo()  # the broker is back

    with django_capture_on_commit_callbacks(execute=True):
        again = client.post(response["Location"], {"requeue": "1"})

    assert again.status_code == 302
    job.refresh_from_db()
    assert job.state == "done" and audit_jobs.bundle_file(job).is_file()
    assert not tasks.requeue(job=job)  # done: nothing to send
    other = _client(staff_user("colleague", groups=["compliance"]))
    assert other.post(response["Location"], {"requeue": "1"}).status_code == 403
