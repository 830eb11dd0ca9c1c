"""What a partner reports about a lead (:class:`EventReport`), the bounds on its values, and
the checks a report must pass on its own, before any stored event is read.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from decimal import Decimal

from django.utils import timezone

from marketplace.models import EventType, LeadEvent
from partners.currencies import CURRENCIES
from partners.months import month_label

# Loans on this platform are consumer loans; anything beyond is a typo or an attack.
MAX_AMOUNT = Decimal("10000000")


MAX_APR = Decimal("1")


CLOCK_SKEW = timedelta(minutes=5)


# A return dated inside the window may reach us a little later (partner batch jobs).
RETURN_REPORTING_GRACE = timedelta(days=1)


# A revenue event's amount is at most this multiple of the funded principal: a sanity
# bound against typos (cents as yuan, principal reported as revenue), not a business rule.
REVENUE_PRINCIPAL_BOUND = Decimal("1")


PERIOD_FORMAT = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")


class EventError(ValueError):
    """A reported event that cannot be applied; ``field`` names the input at fault."""

    def __init__(self, message: str, *, field: str = "", code: str = "invalid_event") -> None:
        super().__init__(message)
        self.field = field
        self.code = code


@dataclass(frozen=True)
class EventReport:
    external_id: str
    type: str
    occurred_at: datetime
    amount: Decimal | None = None
    apr: Decimal | None = None
    principal: Decimal | None = None
    reason: str = ""
    reverses: str = ""  # for a reversal: the partner's event_id of the event taken back
    period: str = ""  # for a revenue event: the month earned, "YYYY-MM"
    # Of amount / principal; "" = the referral's currency (resolved by record_event).
    currency: str = ""


def carries_amount(report: EventReport) -> bool:
    return report.amount is not None or report.principal is not None


def _normalised(report: EventReport) -> EventReport:
    """A revenue event without a period is the revenue of the month it occurred in."""
    if report.type == EventType.REVENUE and not report.period:
        return replace(report, period=month_label(report.occurred_at))
    return report


def _with_currency(report: EventReport, referral_currency: str) -> EventReport:
    """An amount without a currency is in the referral's currency."""
    if carries_amount(report) and not report.currency:
        return replace(report, currency=referral_currency)
    return report


def _validate_shape(report: EventReport) -> None:
    if report.type not in EventType.values:
        raise EventError(f"unknown event type {report.type!r}", field="type")
    if report.occurred_at > timezone.now() + CLOCK_SKEW:
        raise EventError("occurred_at is in the future", field="occurred_at")
    for name in ("amount", "principal"):
        value = getattr(report, name)
        if value is not None and not (Decimal(0) < value <= MAX_AMOUNT):
            raise EventError(f"{name} must be positive and at most {MAX_AMOUNT}", field=name)
    if report.currency and report.currency not in CURRENCIES:
        raise EventError(f"currency must be one of {', '.join(CURRENCIES)}", field="currency")
    if report.currency and not carries_amount(report):
        raise EventError(
            "currency is the currency of amount or principal; this event carries neither",
            field="currency",
        )
    if report.apr is not None and not (Decimal(0) <= report.apr <= MAX_APR):
        raise EventError("apr is a fraction between 0 and 1 (0.2150 = 21.5%)", field="apr")
    if report.type == EventType.APPROVED and (report.amount is None or report.apr is None):
        raise EventError("an approved event needs amount and apr", field="amount")
    if report.type == EventType.FUNDED and report.principal is None:
        raise EventError("a funded event needs principal", field="principal")
    if report.type == EventType.REVENUE:
        if report.amount is None:
            raise EventError("a revenue event needs amount: the revenue earned", field="amount")
        if report.apr is not None or report.principal is not None:
            raise EventError("a revenue event carries only amount and period", field="amount")
        if report.period and not PERIOD_FORMAT.match(report.period):
            raise EventError("period is a month, YYYY-MM (e.g. 2026-11)", field="period")
        if report.period and report.period > month_label(report.occurred_at):
            raise EventError("period is after the month of occurred_at", field="period")
    elif report.period:
        raise EventError("only a revenue event may name a period", field="period")
    if report.type in {EventType.REJECTED, EventType.RETURNED} and not report.reason:
        raise EventError(f"a {report.type} event needs a reason code", field="reason")
    if report.type == EventType.REVERSAL:
        if not report.reverses:
            raise EventError(
                "a reversal needs reverses: the event_id of the event it takes back",
                field="reverses",
            )
        if report.reverses == report.external_id:
            raise EventError("an event cannot reverse itself", field="reverses")
        if any(getattr(report, name) is not None for name in ("amount", "apr", "principal")):
            raise EventError("a reversal carries no amounts", field="reverses")
    elif report.reverses:
        raise EventError("only a reversal event may name reverses", field="reverses")


def _same(event: LeadEvent, report: EventReport) -> bool:
    return (
        event.type == report.type
        and event.occurred_at == report.occurred_at
        and event.amount == report.amount
        and event.apr == report.apr
        and event.principal == report.principal
        and event.currency == report.currency
        and event.reason == report.reason
        and event.revenue_period == report.period
        and (event.reverses.external_id if event.reverses else "") == report.reverses
    )
