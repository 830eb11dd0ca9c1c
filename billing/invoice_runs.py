"""A period's invoices generated (and issued) from the admin, in a worker, with progress.

Finance starts a run from the invoice list (``billing.tasks.start_invoice_run``): its state
is stored in the cache under a random id (:func:`new_run`) and ``run_invoices`` queued
through the outbox
(so a broker outage delays the run but never loses it). The task drafts every partner's
invoices for the month (``invoicing.invoice_month``), then, when asked, issues each draft
in turn, updating the state after each so the admin's progress page can poll it. Each
issued invoice gets a history entry naming who started the run; a draft reconciliation
refuses stays a draft, listed with the reason.
"""

from __future__ import annotations

import uuid
from typing import Any, TypedDict

from django.contrib.auth import get_user_model
from django.core.cache import cache

from billing import invoicing
from billing.models import Invoice, InvoiceStatus
from billing.periods import Period
from partners import admin_audit

TTL = 24 * 3600  # a run's state outlives any run; the invoices themselves are the record


class RunState(TypedDict):
    period: str
    issue: bool
    stage: str  # queued, drafting, issuing, done, failed
    done: int
    total: int
    drafted: int
    issued: list[str]  # invoice numbers
    refused: list[str]  # "partner currency: why"
    error: str


def _key(run_id: str) -> str:
    return f"billing:invoice-run:{run_id}"


def state(run_id: str) -> RunState | None:
    found: RunState | None = cache.get(_key(run_id))
    return found


def _save(run_id: str, run: RunState) -> None:
    cache.set(_key(run_id), run, TTL)


def new_run(*, period: Period, issue: bool) -> str:
    """A queued run's state, under a new id (``billing.tasks.start_invoice_run`` queues
    it)."""
    run_id = uuid.uuid4().hex
    _save(
        run_id,
        RunState(
            period=str(period), issue=issue, stage="queued", done=0, total=0, drafted=0,
            issued=[], refused=[], error="",
        ),
    )  # fmt: skip
    return run_id


def run(*, run_id: str, period: Period, issue: bool, user_id: Any) -> RunState:
    """The worker's part: draft, then issue draft by draft, saving progress as it goes."""
    current = state(run_id) or RunState(
        period=str(period), issue=issue, stage="queued", done=0, total=0, drafted=0,
        issued=[], refused=[], error="",
    )  # fmt: skip
    user = get_user_model().objects.filter(pk=user_id).first()
    current["stage"], current["done"], current["total"] = "drafting", 0, 1
    _save(run_id, current)
    try:
        made = invoicing.invoice_month(period=period, issue=False).made
    except invoicing.InvoicingError as exc:
        current["stage"], current["error"] = "failed", str(exc)
        _save(run_id, current)
        return current
    current["drafted"], current["done"] = len(made), 1
    if issue:
        drafts = list(
            Invoice.objects.filter(period_start=period.start, status=InvoiceStatus.DRAFT)
            .select_related("partner")
            .order_by("partner_id", "currency", "created_at")
        )
        current["stage"], current["done"], current["total"] = "issuing", 0, len(drafts)
        _save(run_id, current)
        for draft in drafts:
            try:
                issued = invoicing.issue_invoice(invoice_id=draft.pk)
            except invoicing.IssueRefused as refused:
                current["refused"].append(f"{draft.partner} {draft.currency}: {refused}")
            except invoicing.InvoicingError as exc:
                current["refused"].append(f"{draft.partner} {draft.currency}: {exc}")
            else:
                current["issued"].append(str(issued.number))
                if user is not None:
                    admin_audit.record(
                        user,
                        issued,
                        f"Issued by the invoice run of {period}",
                        changes={"status": ("draft", issued.status)},
                    )
            current["done"] += 1
            _save(run_id, current)
    current["stage"] = "done"
    _save(run_id, current)
    return current
