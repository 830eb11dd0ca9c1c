"""Scheduled billing work (celery beat); every task is idempotent."""

from __future__ import annotations

import logging
import uuid
from datetime import date
from typing import Any

from celery import shared_task
from django.db import transaction
from django.utils import timezone

from billing import budgets, charging, fee_cards, invoice_runs, invoicing, lab_figures
from billing.periods import Period
from marketplace import cap_reconcile, outbox
from marketplace.outbox import OutboxTask

logger = logging.getLogger(__name__)


@shared_task
def generate_last_month_invoices() -> int:
    """Beat runs it on the 1st (and 2nd, 3rd): last month's invoices, issued."""
    period = Period.before(timezone.now().date())
    return len(invoicing.generate_invoices(period=period, issue=True))


@shared_task(base=OutboxTask)
def charge_unbilled_events() -> int:
    return charging.charge_unbilled_events()


@shared_task(base=OutboxTask)
def retier_month(partner_id: str, month: str) -> int:
    """Units reported out of time order renumbered a partner's month: re-price it."""
    return charging.retier_month(partner_id=uuid.UUID(partner_id), month=date.fromisoformat(month))


@shared_task
def sweep_budgets() -> int:
    """Beat runs it hourly: monthly budget holds follow this month's spend (a new month
    lifts last month's holds)."""
    return budgets.sweep_budgets()


@shared_task
def reconcile_cap_counters() -> int:
    """Beat: the current month's cap counters against what they count; completes lost
    releases (the one repair, ``marketplace.cap_reconcile``) and logs every remaining
    drift with ids and amounts only. Returns the drifts."""
    month = budgets.current_month()
    caps = cap_reconcile.reconcile_caps(month=month, repair=True)
    _, charged = budgets.charged_drift(month=month)
    for lead_id in caps.released:
        logger.warning("cap reconciliation: released the lost release of lead %s", lead_id)
    for drift in [*caps.drifts, *charged]:
        logger.error("cap reconciliation: %s", drift)
    return len(caps.drifts) + len(charged)


@shared_task
def refresh_experiment_figures() -> int:
    """Beat, every minute: the strategy lab's per-arm results of running experiments,
    stored for the dashboard (``billing.lab_figures``)."""
    return lab_figures.refresh()


@shared_task
def sync_fee_cards() -> int:
    """Beat runs it hourly: routing's fee cards follow schedules that came into force (or
    ended) since they were written."""
    return fee_cards.sync_all()


@shared_task(base=OutboxTask)
def run_invoices(run_id: str, period: str, issue: str, user_id: str) -> str:
    """A period's invoices generated (and issued) from the admin, with progress
    (billing.invoice_runs)."""
    done = invoice_runs.run(
        run_id=run_id, period=Period.parse(period), issue=bool(issue), user_id=int(user_id)
    )
    return done["stage"]


def start_invoice_run(*, period: Period, issue: bool, user_id: Any) -> str:
    """Queue a run of ``period`` through the outbox (issuing its drafts too when
    ``issue``); returns its id, whose state the admin's progress page polls."""
    with transaction.atomic():  # the run's row and its message, or neither
        run_id = invoice_runs.new_run(period=period, issue=issue, user_id=user_id)
        outbox.enqueue(run_invoices, run_id, str(period), "1" if issue else "", str(user_id))
    return run_id


def start_invoice_run_again(*, run_id: str, user_id: Any) -> str | None:
    """Queue a new run doing what the failed run ``run_id`` was asked to; None when that
    run did not fail."""
    with transaction.atomic():
        again = invoice_runs.again(run_id=run_id, user_id=user_id)
        if again is None:
            return None
        found = invoice_runs.state(again)
        assert found is not None
        outbox.enqueue(
            run_invoices, again, found["period"], "1" if found["issue"] else "", str(user_id)
        )
    return again


@shared_task
def expire_stale_invoice_runs() -> int:
    """Beat, every minute: runs whose worker died are failed (``invoice_runs.LEASE``)."""
    return invoice_runs.expire_stale()
