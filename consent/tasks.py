from __future__ import annotations

from celery import shared_task

from consent import grants, ledger, sequencer


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
