"""A period's invoices generated (and issued) from the admin, in a worker, with progress.

Finance starts a run from the invoice list (``billing.tasks.start_invoice_run``): a row
(``billing.models.InvoiceRun``, :func:`new_run`) written with ``run_invoices`` queued
through the outbox in one transaction (so a broker outage delays the run but never loses
it). The task claims the run once (a re-published or redelivered message finds it claimed
and does nothing), drafts every partner's invoices for the month (``invoicing.invoice_month``)
and, when asked, issues each draft in turn, writing progress after each batch and draft so
the admin's progress page can poll it. Each issued invoice gets a history entry naming who
started the run; a draft reconciliation refuses stays a draft, listed with the reason.

Progress is in the database, not the cache: every web process sees it (a per-process
cache would not), it survives restarts, and it carries the lease. A worker can die mid-run
(killed, out of memory): each progress write stamps ``heartbeat_at``, and a run silent for
longer than ``LEASE`` is failed with a message saying so (:func:`expire_stale`: beat every
minute, and the run's page when read). Finance starts it again (:func:`again`, a new run
of the same period): runs are idempotent, so the new one drafts what is missing and issues
the drafts left.
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime, timedelta
from typing import Any, TypedDict

from django.contrib.auth import get_user_model
from django.utils import timezone

from billing import invoicing
from billing.models import RUNNING_STAGES, Invoice, InvoiceRun, InvoiceRunStage, InvoiceStatus
from billing.periods import Period
from partners import admin_audit

logger = logging.getLogger(__name__)

# A running run whose worker wrote nothing for this long lost its worker: far above the
# longest silent step (drafting one batch of ``invoicing.runs.BATCH`` partners).
LEASE = timedelta(minutes=10)


class RunState(TypedDict):
    """What the progress page and its JSON status show."""

    id: str
    period: str
    issue: bool
    stage: str  # queued, drafting, issuing, done, failed
    done: int
    total: int
    drafted: int
    issued: list[str]  # invoice numbers
    refused: list[str]  # "partner currency: why"
    error: str


def _parse_id(run_id: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(run_id)
    except ValueError:
        return None


def _as_state(run: InvoiceRun) -> RunState:
    return RunState(
        id=run.pk.hex, period=str(Period(run.period_start)), issue=run.issue, stage=run.stage,
        done=run.done, total=run.total, drafted=run.drafted, issued=list(run.issued),
        refused=list(run.refused), error=run.error,
    )  # fmt: skip


def state(run_id: str) -> RunState | None:
    """The run's state (None for no such run); a run whose lease ran out is failed first,
    so its page says so at once."""
    pk = _parse_id(run_id)
    if pk is None:
        return None
    expire_stale(run_id=pk)
    found = InvoiceRun.objects.filter(pk=pk).first()
    return None if found is None else _as_state(found)


def new_run(*, period: Period, issue: bool, user_id: Any = None) -> str:
    """A queued run's row, under a new id, in the caller's transaction
    (``billing.tasks.start_invoice_run`` queues it)."""
    run = InvoiceRun.objects.create(period_start=period.start, issue=issue, started_by_id=user_id)
    return run.pk.hex


def again(*, run_id: str, user_id: Any) -> str | None:
    """A new queued run of what the failed run was asked to do (None unless it failed);
    the failed row stays as the record."""
    pk = _parse_id(run_id)
    if pk is None:
        return None
    failed = InvoiceRun.objects.filter(pk=pk, stage=InvoiceRunStage.FAILED).first()
    if failed is None:
        return None
    return new_run(period=Period(failed.period_start), issue=failed.issue, user_id=user_id)


def stale_message(heartbeat: datetime | None) -> str:
    seen = f" at {heartbeat:%Y-%m-%d %H:%M:%S} UTC" if heartbeat is not None else ""
    return (
        f"The worker running this invoice run stopped reporting{seen} and did not come back "
        f"within {int(LEASE.total_seconds() // 60)} minutes (stopped, restarted or out of "
        "memory): the run did not finish. Start it again: what it drafted or issued stays, "
        "and the new run does the rest."
    )


def expire_stale(*, now: datetime | None = None, run_id: uuid.UUID | None = None) -> int:
    """Fail the running runs (or the one ``run_id``) whose worker has been silent for
    longer than ``LEASE``; returns how many. Compare-and-set on the stage and the heartbeat
    read, so a worker writing progress meanwhile keeps its run."""
    now = now or timezone.now()
    stale = InvoiceRun.objects.filter(stage__in=RUNNING_STAGES, heartbeat_at__lt=now - LEASE)
    if run_id is not None:
        stale = stale.filter(pk=run_id)
    expired = 0
    for pk, heartbeat in stale.order_by().values_list("pk", "heartbeat_at"):
        if InvoiceRun.objects.filter(
            pk=pk, stage__in=RUNNING_STAGES, heartbeat_at=heartbeat
        ).update(stage=InvoiceRunStage.FAILED, error=stale_message(heartbeat), finished_at=now):
            logger.warning("invoice run %s failed: its worker stopped reporting", pk)
            expired += 1
    return expired


class _Run:
    """The worker's handle on its claimed row: every write is also the heartbeat, and
    touches the row only while it is still running (a run failed as stale stays failed)."""

    def __init__(self, pk: uuid.UUID) -> None:
        self.pk = pk
        self.alive = True

    def save(self, **fields: Any) -> None:
        if not self.alive:
            return
        self.alive = bool(
            InvoiceRun.objects.filter(pk=self.pk, stage__in=RUNNING_STAGES).update(
                heartbeat_at=timezone.now(), **fields
            )
        )

    def drafting(self, stage: str, done: int, total: int) -> None:
        """``invoicing.invoice_month``'s progress: partners drafted so far."""
        self.save(done=done, total=total)


def run(*, run_id: str, period: Period, issue: bool, user_id: Any) -> RunState:
    """The worker's part: draft, then issue draft by draft, saving progress as it goes. A
    run already claimed (by this message's earlier delivery) is left alone."""
    pk = _parse_id(run_id)
    if pk is None:
        raise LookupError(f"no invoice run {run_id}")
    now = timezone.now()
    claimed = InvoiceRun.objects.filter(pk=pk, stage=InvoiceRunStage.QUEUED).update(
        stage=InvoiceRunStage.DRAFTING, started_at=now, heartbeat_at=now, done=0, total=0
    )
    found = InvoiceRun.objects.filter(pk=pk).first()
    if found is None:
        raise LookupError(f"no invoice run {run_id}")
    if not claimed:
        return _as_state(found)
    user = get_user_model().objects.filter(pk=user_id).first()
    current = _Run(found.pk)
    try:
        made = invoicing.invoice_month(period=period, issue=False, progress=current.drafting).made
    except invoicing.InvoicingError as exc:
        current.save(stage=InvoiceRunStage.FAILED, error=str(exc)[:500], finished_at=timezone.now())
        return _as_state(InvoiceRun.objects.get(pk=pk))
    current.save(drafted=len(made))
    if issue:
        drafts = list(
            Invoice.objects.filter(period_start=period.start, status=InvoiceStatus.DRAFT)
            .select_related("partner")
            .order_by("partner_id", "currency", "created_at")
        )
        current.save(stage=InvoiceRunStage.ISSUING, done=0, total=len(drafts))
        issued: list[str] = []
        refused: list[str] = []
        for done, draft in enumerate(drafts, start=1):
            try:
                invoice = invoicing.issue_invoice(invoice_id=draft.pk)
            except invoicing.IssueRefused as refusal:
                refused.append(f"{draft.partner} {draft.currency}: {refusal}")
            except invoicing.InvoicingError as exc:
                refused.append(f"{draft.partner} {draft.currency}: {exc}")
            else:
                issued.append(str(invoice.number))
                if user is not None:
                    admin_audit.record(
                        user,
                        invoice,
                        f"Issued by the invoice run of {period}",
                        changes={"status": ("draft", invoice.status)},
                    )
            current.save(done=done, issued=issued, refused=refused)
            if not current.alive:
                break  # failed as stale meanwhile: a new run finishes the period
    current.save(stage=InvoiceRunStage.DONE, finished_at=timezone.now())
    return _as_state(InvoiceRun.objects.get(pk=pk))
