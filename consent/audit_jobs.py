"""Audit bundle exports and ledger verifications started from the admin, run by a worker.

An officer starts a job (``consent.tasks.start_export``, ``start_verify``); the job row is
written in the officer's transaction and handed to Celery once it commits (``run_audit_job``),
so a long export or a million-entry verification never holds a web request. ``run`` records
progress on the row (at most every ``PROGRESS_EVERY`` seconds) for the page that polls it,
and the outcome: an export's summary and its zip file under ``VAR_DIR/audit-exports``, or
the verification report (the same check as ``manage.py verify_consent_ledger``). Both hold
ids, counts and hashes only: the ledger holds no personal data. The file is served to the
officer who asked and nobody else (``bundle_for``).

A worker can die mid-job (killed, out of memory, its machine gone): the job would stay
"running" for ever. So a running job holds a lease: its claim and every progress write
stamp ``heartbeat_at``, and a job silent for longer than ``LEASE`` is failed with a message
saying so (``expire_stale``: beat every minute, and the job's own page when it is read).
It is not queued again by itself (a job that kills its worker would kill the next one
too); its officer starts it again (``again``: a new job of the same selection, the failed
row kept as the record). A worker that was only slow and finishes after that finds its
job no longer running and leaves it failed.
"""

from __future__ import annotations

import logging
import shutil
import time
import uuid
from datetime import datetime, timedelta
from pathlib import Path

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser, User
from django.utils import timezone

from consent import audit_export, ledger
from consent.models import AuditJob, Subject

logger = logging.getLogger(__name__)

PROGRESS_EVERY = 0.5  # seconds between progress writes
# A running job whose worker wrote nothing for this long lost its worker. Far above the
# longest silent step (zipping a bundle after its last entry was written).
LEASE = timedelta(minutes=5)
MAX_PROBLEMS = 50  # problems kept in a report (the count is kept in full)


class JobRefused(ValueError):
    """The job cannot be started as asked (a plain message for the form)."""


def export_root() -> Path:
    return Path(settings.VAR_DIR) / "audit-exports"


def bundle_file(job: AuditJob) -> Path:
    return export_root() / f"{job.id}.zip"


def create_export(
    *,
    user: User,
    subject_id: uuid.UUID | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> AuditJob:
    """A queued export of a subject's entries, or of the entries recorded in [since,
    until), in the caller's transaction (``consent.tasks.start_export`` queues it)."""
    if (subject_id is None) == (since is None or until is None):
        raise JobRefused("Give either a subject or a time range (from and until).")
    if since is not None and until is not None and since >= until:
        raise JobRefused("The range must start before it ends.")
    if subject_id is not None and not Subject.objects.filter(pk=subject_id).exists():
        raise JobRefused("No subject has this id.")
    return AuditJob.objects.create(
        kind=AuditJob.Kind.EXPORT,
        requested_by=user,
        subject_id=subject_id,
        since=since,
        until=until,
    )


def create_verify(*, user: User) -> AuditJob:
    """A queued verification of the whole ledger (``consent.tasks.start_verify`` queues it)."""
    return AuditJob.objects.create(kind=AuditJob.Kind.VERIFY, requested_by=user)


def create_again(*, job: AuditJob, user: User) -> AuditJob:
    """A new queued job doing what the failed ``job`` was asked to do, for the officer who
    asked it (``consent.tasks.start_again`` queues it); the failed row stays as it was."""
    if job.state != AuditJob.State.FAILED:
        raise JobRefused("Only a failed job can be started again.")
    if job.requested_by_id != user.pk:
        raise JobRefused("Only the officer who asked can start the job again.")
    if job.kind == AuditJob.Kind.VERIFY:
        return create_verify(user=user)
    return create_export(user=user, subject_id=job.subject_id, since=job.since, until=job.until)


def stale_message(heartbeat: datetime | None) -> str:
    seen = f" at {heartbeat:%Y-%m-%d %H:%M:%S} UTC" if heartbeat is not None else ""
    return (
        f"The worker running this job stopped reporting{seen} and did not come back within "
        f"{int(LEASE.total_seconds() // 60)} minutes (stopped, restarted or out of memory): "
        "the job did not finish. Start it again."
    )


def expire_stale(*, now: datetime | None = None, job_id: uuid.UUID | None = None) -> int:
    """Fail the running jobs (or the one ``job_id``) whose worker has been silent for
    longer than ``LEASE``; returns how many. Compare-and-set on the state and the
    heartbeat read, so a worker writing progress meanwhile keeps its job."""
    now = now or timezone.now()
    stale = AuditJob.objects.filter(
        state=AuditJob.State.RUNNING, heartbeat_at__lt=now - LEASE
    ).order_by()
    if job_id is not None:
        stale = stale.filter(pk=job_id)
    expired = 0
    for pk, heartbeat in stale.values_list("pk", "heartbeat_at"):
        if AuditJob.objects.filter(
            pk=pk, state=AuditJob.State.RUNNING, heartbeat_at=heartbeat
        ).update(state=AuditJob.State.FAILED, error=stale_message(heartbeat), finished_at=now):
            logger.warning("audit job %s failed: its worker stopped reporting", pk)
            expired += 1
    return expired


class _Progress:
    """Writes (done, total) to the job's row, throttled, the last one always."""

    def __init__(self, job_id: uuid.UUID) -> None:
        self.job_id = job_id
        self.last = 0.0

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        if done < total and now - self.last < PROGRESS_EVERY:
            return
        self.last = now
        # Also the lease's heartbeat; a job already failed as stale stays failed.
        AuditJob.objects.filter(pk=self.job_id, state=AuditJob.State.RUNNING).update(
            done=done, total=total, heartbeat_at=timezone.now()
        )


def run(*, job_id: uuid.UUID) -> AuditJob:
    """Carry out a queued job (a worker's task); a job already started is left alone, so a
    redelivered task does no work twice."""
    now = timezone.now()
    claimed = AuditJob.objects.filter(pk=job_id, state=AuditJob.State.QUEUED).update(
        state=AuditJob.State.RUNNING, started_at=now, heartbeat_at=now
    )
    job = AuditJob.objects.get(pk=job_id)
    if not claimed:
        return job
    try:
        result = _export(job) if job.kind == AuditJob.Kind.EXPORT else _verify(job)
    except audit_export.ExportError as exc:
        return _finish(job, state=AuditJob.State.FAILED, error=str(exc)[:500])
    except Exception:
        logger.exception("audit job %s failed", job.id)
        _finish(job, state=AuditJob.State.FAILED, error="Internal error: see the worker's log.")
        raise
    return _finish(job, state=AuditJob.State.DONE, result=result)


def _finish(
    job: AuditJob, *, state: str, result: dict[str, object] | None = None, error: str = ""
) -> AuditJob:
    # Only a job still running: one failed as stale meanwhile keeps its message.
    AuditJob.objects.filter(pk=job.pk, state=AuditJob.State.RUNNING).update(
        state=state, result=result or {}, error=error, finished_at=timezone.now()
    )
    return AuditJob.objects.get(pk=job.pk)


def _export(job: AuditJob) -> dict[str, object]:
    root = export_root()
    root.mkdir(parents=True, exist_ok=True)
    work = root / f"{job.id}.d"
    shutil.rmtree(work, ignore_errors=True)
    try:
        summary = audit_export.export_bundle(
            out_dir=work,
            subject_id=job.subject_id,
            since=job.since,
            until=job.until,
            progress=_Progress(job.id),
        )
        # Written under a temporary name, renamed when whole: a download never sees half.
        partial = shutil.make_archive(str(root / f"{job.id}.partial"), "zip", root_dir=work)
        Path(partial).replace(bundle_file(job))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return {
        "entries": summary.entries,
        "tree_size": summary.tree_size,
        "not_yet_checkpointed": summary.not_yet_checkpointed,
        "public_key": summary.public_key,
        "key_id": summary.key_id,
    }


def _verify(job: AuditJob) -> dict[str, object]:
    report = ledger.verify_ledger(progress=_Progress(job.id))
    return {
        "ok": report.ok,
        "entries_checked": report.entries_checked,
        "checkpoints_checked": report.checkpoints_checked,
        "problem_count": len(report.problems),
        "problems": report.problems[:MAX_PROBLEMS],
        "first_bad_seq": report.first_bad_seq,
        "pending": report.pending,
    }


def job_for(*, job_id: uuid.UUID, user: AbstractBaseUser) -> AuditJob | None:
    """The job if ``user`` asked for it; None for anyone else (whatever their role). A
    running job whose lease ran out is failed first, so its page says so at once."""
    expire_stale(job_id=job_id)
    return AuditJob.objects.filter(pk=job_id, requested_by_id=user.pk).first()


def bundle_for(*, job_id: uuid.UUID, user: AbstractBaseUser) -> Path | None:
    """The finished export's file, for the officer who asked only."""
    job = job_for(job_id=job_id, user=user)
    if job is None or job.kind != AuditJob.Kind.EXPORT or job.state != AuditJob.State.DONE:
        return None
    path = bundle_file(job)
    return path if path.is_file() else None
