"""Outcomes partners report on their leads: idempotent, valid in any arrival order.

A lead's status is derived from the set of its events (returned > funded > approved >
accepted > rejected), never from the last one to arrive, so reordering changes nothing.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from marketplace.models import REPORTABLE_STATUSES, EventType, Lead, LeadEvent, LeadStatus
from marketplace.signals import lead_event_recorded

# Loans on this platform are consumer loans; anything beyond is a typo or an attack.
MAX_AMOUNT = Decimal("10000000")
MAX_APR = Decimal("1")
CLOCK_SKEW = timedelta(minutes=5)
# A return dated inside the window may reach us a little later (partner batch jobs).
RETURN_REPORTING_GRACE = timedelta(days=1)

STATUS_RANK = [
    (EventType.RETURNED, LeadStatus.RETURNED),
    (EventType.FUNDED, LeadStatus.FUNDED),
    (EventType.APPROVED, LeadStatus.APPROVED),
    (EventType.ACCEPTED, LeadStatus.ACCEPTED),
    (EventType.REJECTED, LeadStatus.REJECTED),
]


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


def _validate_shape(report: EventReport) -> None:
    if report.type not in EventType.values:
        raise EventError(f"unknown event type {report.type!r}", field="type")
    if report.occurred_at > timezone.now() + CLOCK_SKEW:
        raise EventError("occurred_at is in the future", field="occurred_at")
    for name in ("amount", "principal"):
        value = getattr(report, name)
        if value is not None and not (Decimal(0) < value <= MAX_AMOUNT):
            raise EventError(f"{name} must be positive and at most {MAX_AMOUNT}", field=name)
    if report.apr is not None and not (Decimal(0) <= report.apr <= MAX_APR):
        raise EventError("apr is a fraction between 0 and 1 (0.2150 = 21.5%)", field="apr")
    if report.type == EventType.APPROVED and (report.amount is None or report.apr is None):
        raise EventError("an approved event needs amount and apr", field="amount")
    if report.type == EventType.FUNDED and report.principal is None:
        raise EventError("a funded event needs principal", field="principal")
    if report.type in {EventType.REJECTED, EventType.RETURNED} and not report.reason:
        raise EventError(f"a {report.type} event needs a reason code", field="reason")


def _same(event: LeadEvent, report: EventReport) -> bool:
    return (
        event.type == report.type
        and event.occurred_at == report.occurred_at
        and event.amount == report.amount
        and event.apr == report.apr
        and event.principal == report.principal
        and event.reason == report.reason
    )


def _check_consistency(lead: Lead, events: list[LeadEvent], report: EventReport) -> None:
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
    for event_type, status in STATUS_RANK:
        if event_type in types:
            return status
    return None


def record_event(
    *, lead_id: uuid.UUID, partner_id: uuid.UUID, report: EventReport
) -> tuple[LeadEvent, bool]:
    """Store the event (or return the one already stored with that id) and apply it.
    Returns (event, created)."""
    _validate_shape(report)
    with transaction.atomic():
        lead = Lead.objects.select_for_update().get(pk=lead_id, partner_id=partner_id)
        existing = LeadEvent.objects.filter(
            partner_id=partner_id, external_id=report.external_id
        ).first()
        if existing is not None:
            if existing.lead_id != lead.id or not _same(existing, report):
                raise EventError(
                    "this event_id was already used for a different event",
                    field="event_id",
                    code="event_id_conflict",
                )
            return existing, False
        if lead.status not in REPORTABLE_STATUSES:
            raise EventError(
                f"the lead was not delivered to you (status {lead.status})",
                field="lead",
                code="lead_not_delivered",
            )
        _check_dates(lead, report)
        events = list(lead.events.all())
        _check_consistency(lead, events, report)
        try:
            with transaction.atomic():
                event = LeadEvent.objects.create(
                    lead=lead,
                    partner_id=partner_id,
                    external_id=report.external_id,
                    type=report.type,
                    occurred_at=report.occurred_at,
                    amount=report.amount,
                    apr=report.apr,
                    principal=report.principal,
                    reason=report.reason,
                )
        except IntegrityError:
            # The same event id was stored by a concurrent request since we looked.
            existing = LeadEvent.objects.get(partner_id=partner_id, external_id=report.external_id)
            if existing.lead_id != lead.id or not _same(existing, report):
                raise EventError(
                    "this event_id was already used for a different event",
                    field="event_id",
                    code="event_id_conflict",
                ) from None
            return existing, False
        events.append(event)
        new_status = derive_status({e.type for e in events}) or lead.status
        lead.status = new_status
        if report.type == EventType.APPROVED:
            lead.approved_amount, lead.approved_apr = report.amount, report.apr
        if report.type == EventType.FUNDED:
            lead.funded_principal = report.principal
        lead.save()
        lead_event_recorded.send(sender=LeadEvent, event=event)
        return event, True
