"""A report checked against the lead's stored events: which events still stand, what a
reversal may take back, revenue on a funded loan, one currency per comparison, dates inside
the return window, and the status the standing events rank to. Plain functions over the
events in memory: no queries.
"""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from marketplace.events.report import (
    CLOCK_SKEW,
    RETURN_REPORTING_GRACE,
    REVENUE_PRINCIPAL_BOUND,
    EventError,
    EventReport,
)
from marketplace.models import EventType, Lead, LeadEvent, LeadStatus
from partners.months import month_label

STATUS_RANK = [
    (EventType.RETURNED, LeadStatus.RETURNED),
    (EventType.FUNDED, LeadStatus.FUNDED),
    (EventType.APPROVED, LeadStatus.APPROVED),
    (EventType.ACCEPTED, LeadStatus.ACCEPTED),
    (EventType.REJECTED, LeadStatus.REJECTED),
]


def standing(events: list[LeadEvent]) -> list[LeadEvent]:
    """The outcome events that still count: not reversals, and not reversed."""
    reversed_ids = {e.reverses_id for e in events if e.type == EventType.REVERSAL}
    return [e for e in events if e.type != EventType.REVERSAL and e.id not in reversed_ids]


def _reversed_event(events: list[LeadEvent], report: EventReport) -> LeadEvent:
    """The event a reversal takes back: the caller's, on this lead, standing."""
    target = next((e for e in events if e.external_id == report.reverses), None)
    if target is None:
        raise EventError(
            f"this lead has no event with event_id {report.reverses!r}",
            field="reverses",
            code="reversed_event_not_found",
        )
    if target.type == EventType.REVERSAL:
        raise EventError(
            "a reversal cannot be reversed; report the event again instead",
            field="reverses",
            code="cannot_reverse_a_reversal",
        )
    if any(e.reverses_id == target.id for e in events):
        raise EventError(
            f"event {report.reverses!r} was already reversed",
            field="reverses",
            code="already_reversed",
        )
    if report.occurred_at < target.occurred_at - CLOCK_SKEW:
        raise EventError(
            "a reversal cannot be dated before the event it reverses",
            field="occurred_at",
            code="reversal_before_event",
        )
    if target.type == EventType.FUNDED and any(
        e.type == EventType.REVENUE for e in standing(events)
    ):
        raise EventError(
            "revenue was reported on this funding: reverse the revenue events first",
            field="reverses",
            code="revenue_reported",
        )
    return target


def _check_revenue(events: list[LeadEvent], report: EventReport) -> None:
    """Against the standing events: a funded loan, a bounded amount, one per period."""
    funded = [e for e in events if e.type == EventType.FUNDED and e.principal]
    if not funded:
        raise EventError(
            "revenue can be reported only on a funded lead",
            field="type",
            code="lead_not_funded",
        )
    principal = funded[-1].principal
    assert principal is not None and report.amount is not None
    _same_currency(report, funded[-1], what="the funded principal")
    if report.amount > principal * REVENUE_PRINCIPAL_BOUND:
        raise EventError(
            f"revenue {report.amount} is above the funded principal {principal}",
            field="amount",
        )
    if report.period < month_label(funded[-1].occurred_at):
        raise EventError("period is before the loan was funded", field="period")
    if any(e.type == EventType.REVENUE and e.revenue_period == report.period for e in events):
        raise EventError(
            f"revenue for period {report.period} was already reported on this lead; "
            "reverse it to report it again",
            field="period",
            code="duplicate_revenue_period",
        )


def _same_currency(report: EventReport, other: LeadEvent, *, what: str) -> None:
    """Amounts are compared only within one currency: a bound checked across currencies
    would compare bare numbers (8000 CNY is not above 1200 USD)."""
    if other.currency != report.currency:
        raise EventError(
            f"this event is in {report.currency} but {what} it is checked against is in "
            f"{other.currency}; report it in {other.currency}",
            field="currency",
            code="currency_mismatch",
        )


def _check_consistency(events: list[LeadEvent], report: EventReport) -> None:
    """Against the events still standing (a reversed funding may be reported again)."""
    if report.type == EventType.REVERSAL:
        return
    events = standing(events)
    if report.type == EventType.REVENUE:
        _check_revenue(events, report)
        return
    if report.type == EventType.FUNDED:
        for other in events:
            if other.type == EventType.APPROVED and other.amount:
                _same_currency(report, other, what="the approved amount")
    if report.type == EventType.APPROVED:
        for other in events:
            if other.type == EventType.FUNDED and other.principal:
                _same_currency(report, other, what="the funded principal")
    approved = [e.amount for e in events if e.type == EventType.APPROVED and e.amount]
    funded = [e.principal for e in events if e.type == EventType.FUNDED and e.principal]
    principal, amount = report.principal, report.amount
    if (
        report.type == EventType.FUNDED
        and principal is not None
        and principal > max(approved, default=principal)
    ):
        raise EventError("funded principal is above the approved amount", field="principal")
    if (
        report.type == EventType.APPROVED
        and amount is not None
        and max(funded, default=amount) > amount
    ):
        raise EventError("approved amount is below the principal already funded", field="amount")
    if any(e.type == report.type for e in events) and report.type != EventType.RETURNED:
        raise EventError(
            f"this lead already has a {report.type} event",
            field="type",
            code="duplicate_event_type",
        )


def _check_dates(lead: Lead, report: EventReport) -> None:
    """Outcomes happen after delivery; a return is dated and *reported* inside the window.
    Both matter for money: fees are priced by the schedule in force at occurred_at."""
    delivered = lead.delivered_at or lead.created_at
    if report.occurred_at < delivered - CLOCK_SKEW:
        raise EventError(
            "occurred_at is before the lead was delivered to you",
            field="occurred_at",
            code="occurred_before_delivery",
        )
    if report.type != EventType.RETURNED:
        return
    closes = delivered + timedelta(days=settings.RETURN_WINDOW_DAYS)
    if report.occurred_at > closes or timezone.now() > closes + RETURN_REPORTING_GRACE:
        raise EventError(
            f"returns are accepted within {settings.RETURN_WINDOW_DAYS} days of delivery",
            field="occurred_at",
            code="return_window_closed",
        )


def derive_status(types: set[str]) -> str | None:
    """The status the outcome types rank to; revenue (and reversal) events rank nowhere."""
    for event_type, status in STATUS_RANK:
        if event_type in types:
            return status
    return None
