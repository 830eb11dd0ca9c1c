from __future__ import annotations

from celery import shared_task

from consent import ledger


@shared_task
def checkpoint_ledger() -> int:
    return ledger.make_checkpoint().tree_size
