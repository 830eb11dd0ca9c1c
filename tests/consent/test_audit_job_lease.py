"""Audit jobs hold a lease: a job whose worker died stops being "running" once the worker
has been silent for longer than ``audit_jobs.LEASE``; it is failed with a message saying
so (by beat, and by its own page when read), and its officer can start it again."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from consent import audit_jobs, ledger, tasks
from consent.models import AuditJob
from tests.consent.support import staff_user
from tests.consent.test_ledger_tamper import built_ledger

__all__ = ["built_ledger"]  # the tamper tests' ledger, used as a fixture here

# Committed, as a worker's own transactions are: a worker killed in the middle of its task
# must not leave the test's single wrapping transaction aborted on PostgreSQL.
pytestmark = pytest.mark.django_db(transaction=True)


class WorkerKilled(BaseException):
    """What a worker's death looks like from inside the task: nothing after it runs."""


@pytest.fixture
def officer(db: None) -> User:
    return staff_user("officer", groups=["compliance"])


def _client(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _dies_midway(monkeypatch: pytest.MonkeyPatch) -> None:
    verify = ledger.verify_ledger

    def killed_after_some_progress(*, progress: Any) -> Any:
        def then_die(done: int, total: int) -> None:
            progress(done, total)
            if done >= 10:
                raise WorkerKilled

        return verify(progress=then_die)

    monkeypatch.setattr(ledger, "verify_ledger", killed_after_some_progress)


def _started_dead_job(
    client: Client, monkeypatch: pytest.MonkeyPatch, capture: Any
) -> tuple[AuditJob, str]:
    _dies_midway(monkeypatch)
    with pytest.raises(WorkerKilled), capture(execute=True):
        client.post(reverse("admin:consent_auditjob_verify"))
    monkeypatch.undo()
    job = AuditJob.objects.get()
    return job, reverse("admin:consent_auditjob_progress", args=[job.pk])


def _silent_for(job: AuditJob, quiet: timedelta) -> None:
    """The worker's last sign of life was ``quiet`` ago (as if that much time passed)."""
    AuditJob.objects.filter(pk=job.pk).update(heartbeat_at=timezone.now() - quiet)


def test_a_job_whose_worker_died_is_failed_once_its_lease_runs_out_and_can_start_again(
    officer: User,
    built_ledger: None,
    monkeypatch: pytest.MonkeyPatch,
    django_capture_on_commit_callbacks: Any,
) -> None:
    client = _client(officer)
    job, page_url = _started_dead_job(client, monkeypatch, django_capture_on_commit_callbacks)
    job.refresh_from_db()
    assert job.state == "running"  # what a dead worker leaves
    assert job.heartbeat_at is not None

    _silent_for(job, audit_jobs.LEASE - timedelta(seconds=30))
    assert audit_jobs.expire_stale() == 0  # within its lease: maybe only slow
    assert (
        client.get(reverse("admin:consent_auditjob_status", args=[job.pk])).json()["state"]
        == "running"
    )

    _silent_for(job, audit_jobs.LEASE + timedelta(seconds=30))
    status = client.get(reverse("admin:consent_auditjob_status", args=[job.pk])).json()
    assert (status["state"], status["finished"]) == ("failed", True)
    assert "stopped reporting" in status["error"] and "Start it again" in status["error"]
    page = client.get(page_url).content.decode()
    assert 'id="job-error"' in page and 'id="again-form"' in page

    with django_capture_on_commit_callbacks(execute=True):
        again = client.post(page_url, {"again": "1"})
    assert again.status_code == 302
    new = AuditJob.objects.exclude(pk=job.pk).get()
    assert again["Location"] == reverse("admin:consent_auditjob_progress", args=[new.pk])
    assert (new.kind, new.state, new.requested_by_id) == ("verify", "done", officer.pk)
    assert new.result["ok"] is True and new.result["entries_checked"] == 50
    job.refresh_from_db()
    assert job.state == "failed"  # the record of what happened stays


def test_beat_fails_only_jobs_past_their_lease(
    officer: User,
    built_ledger: None,
    monkeypatch: pytest.MonkeyPatch,
    django_capture_on_commit_callbacks: Any,
) -> None:
    job, _ = _started_dead_job(_client(officer), monkeypatch, django_capture_on_commit_callbacks)
    fresh = AuditJob.objects.create(
        kind=AuditJob.Kind.VERIFY,
        requested_by=officer,
        state=AuditJob.State.RUNNING,
        started_at=timezone.now(),
        heartbeat_at=timezone.now(),
    )
    _silent_for(job, audit_jobs.LEASE + timedelta(minutes=1))

    assert tasks.expire_stale_audit_jobs() == 1
    assert tasks.expire_stale_audit_jobs() == 0  # no-op when done already
    job.refresh_from_db()
    fresh.refresh_from_db()
    assert job.state == "failed" and job.finished_at is not None
    assert fresh.state == "running"


def test_a_slow_worker_finishing_after_its_lease_leaves_the_job_failed(
    officer: User, built_ledger: None
) -> None:
    job = audit_jobs.create_verify(user=officer)
    verify = ledger.verify_ledger

    def slow(*, progress: Any) -> Any:
        report = verify(progress=progress)
        # Meanwhile the job was judged dead (beat saw no progress for longer than the lease).
        AuditJob.objects.filter(pk=job.pk).update(
            heartbeat_at=timezone.now() - audit_jobs.LEASE - timedelta(seconds=1)
        )
        assert audit_jobs.expire_stale() == 1
        return report

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(ledger, "verify_ledger", slow)
        finished = audit_jobs.run(job_id=job.pk)

    assert finished.state == "failed" and "stopped reporting" in finished.error


def test_only_a_failed_job_of_ones_own_starts_again(
    officer: User,
    built_ledger: None,
    monkeypatch: pytest.MonkeyPatch,
    django_capture_on_commit_callbacks: Any,
) -> None:
    job, page_url = _started_dead_job(
        _client(officer), monkeypatch, django_capture_on_commit_callbacks
    )
    with pytest.raises(audit_jobs.JobRefused, match="Only a failed job"):
        tasks.start_again(job=job, user=officer)  # running, within its lease
    _silent_for(job, audit_jobs.LEASE + timedelta(minutes=1))
    audit_jobs.expire_stale()
    job.refresh_from_db()

    colleague = staff_user("colleague", groups=["compliance"])
    assert _client(colleague).post(page_url, {"again": "1"}).status_code == 403
    with pytest.raises(audit_jobs.JobRefused, match="officer who asked"):
        tasks.start_again(job=job, user=colleague)
    assert AuditJob.objects.count() == 1
