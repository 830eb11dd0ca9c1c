from __future__ import annotations

import logging
import uuid
from datetime import datetime

from celery import shared_task
from django.contrib.auth.models import User
from django.db import transaction

from consent import audit_jobs, grants, ledger, sequencer
from consent.models import AuditJob

logger = logging.getLogger(__name__)


@shared_task
def checkpoint_ledger() -> int:
    return ledger.make_checkpoint().tree_size


@shared_task
def sequence_ledger() -> int:
    """Beat's every-second run of the ledger's one sequencer; returns at once (0) when
    another run holds the head, which then takes these entries."""
    return sequencer.sequence_pending(wait=False)


@shared_task
def record_expiries() -> int:
    return grants.record_expiries()


@shared_task(acks_late=True)
def run_audit_job(job_id: str) -> str:
    """An officer's export or verification (ids only in the arguments)."""
    return str(audit_jobs.run(job_id=uuid.UUID(job_id)).state)


def start_export(
    *,
    user: User,
    subject_id: uuid.UUID | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> AuditJob:
    """Queue the export of a subject's entries, or of the entries recorded in [since, until)
    (``audit_jobs.JobRefused`` for a request that cannot be run)."""
    with transaction.atomic():
        job = audit_jobs.create_export(user=user, subject_id=subject_id, since=since, until=until)
        _queue(job)
    return job


def start_verify(*, user: User) -> AuditJob:
    """Queue a verification of the whole ledger."""
    with transaction.atomic():
        job = audit_jobs.create_verify(user=user)
        _queue(job)
    return job


@shared_task
def expire_stale_audit_jobs() -> int:
    """Beat, every minute: running jobs whose worker died are failed (``audit_jobs.LEASE``)."""
    return audit_jobs.expire_stale()


def start_again(*, job: AuditJob, user: User) -> AuditJob:
    """Queue a new job doing what the failed ``job`` was asked to (``audit_jobs.JobRefused``
    when it did not fail or is someone else's)."""
    with transaction.atomic():
        again = audit_jobs.create_again(job=job, user=user)
        _queue(again)
    return again


def requeue(*, job: AuditJob) -> bool:
    """Send a job still queued to the workers again (its first message lost with a broker
    outage); ``audit_jobs.run`` claims a job once, so a duplicate message does no work twice."""
    if job.state != AuditJob.State.QUEUED:
        return False
    _queue(job)
    return True


def _queue(job: AuditJob) -> None:
    job_id = str(job.id)
    transaction.on_commit(lambda: _send(job_id))


def _send(job_id: str) -> None:
    try:
        run_audit_job.delay(job_id)
    except Exception:
        # The broker is unreachable: the job stays queued, and its page offers to queue it
        # again (``requeue``); the officer's request does not fail after its commit.
        logger.exception("audit job %s could not be queued", job_id)
