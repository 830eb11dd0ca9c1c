from __future__ import annotations

from celery import shared_task

from consent import grants, ledger


@shared_task
def checkpoint_ledger() -> int:
    return ledger.make_checkpoint().tree_size


@shared_task
def record_expiries() -> int:
    return grants.record_expiries()
