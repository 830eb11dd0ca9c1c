from __future__ import annotations

import uuid

from celery import shared_task

from consent import audit_jobs, grants, ledger, sequencer


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
