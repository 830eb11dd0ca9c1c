"""Outcomes partners report on their leads: idempotent, valid in any arrival order.

A lead's status is derived from the set of its events (returned > funded > approved >
accepted > rejected), never from the last one to arrive, so reordering changes nothing.

Events on a lead whose post's answer we lost (still being recorded, a worker killed
mid-post, a timeout, a reset, garbage) are taken at the partner's word when the disclosure
log shows the data was sent to it: the lead was delivered, and the event counts and is
billed like any other. Only a lead never posted to the partner is refused
(``lead_not_delivered``).

A *reversal* takes back one earlier event of the same lead (a cancelled funding, a return
sent by mistake): it names the partner's event_id in ``reverses``. The reversed event stays
stored (the history is append-only) but no longer counts: the status and the latest
outcome values are recomputed from the events still standing, and the same type may be
reported again. A reversal cannot itself be reversed (report the event again instead), and
an event is reversed at most once (a unique constraint decides races).

A *revenue* event reports what the partner earned on a funded loan over one period
(interest and fees actually collected, in ``amount``; the month in ``period``,
"YYYY-MM", by default the month of ``occurred_at``); billing charges the schedule's revenue
share on it. Rules: the lead must have a standing funded event (422 ``lead_not_funded``);
0 < amount <= the funded principal (``REVENUE_PRINCIPAL_BOUND`` times it: a sanity bound,
a year's interest and fees on a consumer loan stay well below its principal); several per
lead, at most one standing per period (409 ``duplicate_revenue_period``; reverse it and
report it again to correct it); it never changes the lead's status. A funding cannot be
reversed while revenue reported on it stands (422 ``revenue_reported``): reverse the
revenue events first.

Every amount carries its currency (``currency``: CNY, HKD, USD or EUR; by default the
referral's, i.e. the currency of the loan asked for). An event with an amount or a
principal (approved, funded, revenue) stores it; an event without one stores none, and
naming a currency on it is refused. Amounts in different currencies are never compared as
bare numbers: a principal checked against an approved amount, or revenue against the funded
principal, in another currency is refused (422 ``currency_mismatch``); billing converts
with a dated exchange rate, it never relabels.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F, Q, QuerySet
from django.utils import timezone

from consent import gate
from marketplace import delivery
from marketplace.models import (
    REPORTABLE_STATUSES,
    EventType,
    Lead,
    LeadEvent,
    LeadStatus,
)
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

# Statuses of a lead whose post we may have sent without recording the partner's answer.
ANSWER_MAY_BE_LOST = {LeadStatus.MATCHED, LeadStatus.DELIVERING, LeadStatus.DELIVERY_FAILED}

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


# The lead columns an event changes (and the row's timestamp).
OUTCOME_FIELDS = [
    "status",
    "approved_amount",
    "approved_apr",
    "funded_principal",
    "outcome_currency",
    "updated_at",
]


def _apply(lead: Lead, events: list[LeadEvent]) -> None:
    """Status and latest outcome values from the standing events; with none standing (all
    reversed) the lead is back to plain delivered."""
    lead.status = derive_status({e.type for e in events}) or LeadStatus.DELIVERED
    approved = [e for e in events if e.type == EventType.APPROVED]
    funded = [e for e in events if e.type == EventType.FUNDED]
    lead.approved_amount = approved[-1].amount if approved else None
    lead.approved_apr = approved[-1].apr if approved else None
    lead.funded_principal = funded[-1].principal if funded else None
    lead.outcome_currency = (approved or funded)[-1].currency if approved or funded else ""
    lead.save(update_fields=OUTCOME_FIELDS)


@dataclass(frozen=True)
class Recorded:
    """What :func:`record` did: the event (stored now or before), whether it was stored
    now, and the lead's events as they stand after it (in memory: the lead stays locked
    to commit, so its settling reads them from here, not again)."""

    event: LeadEvent
    created: bool
    lead: Lead
    events: list[LeadEvent]


def record_event(
    *, lead_id: uuid.UUID, partner_id: uuid.UUID, report: EventReport
) -> tuple[LeadEvent, bool]:
    """Store the event (or return the one already stored with that id) and apply it.
    Returns (event, created)."""
    recorded = record(lead_id=lead_id, partner_id=partner_id, report=report)
    return recorded.event, recorded.created


def record(
    *,
    lead_id: uuid.UUID,
    partner_id: uuid.UUID,
    report: EventReport,
    leads: QuerySet[Lead] | None = None,
    savepoint: bool = True,
) -> Recorded:
    """:func:`record_event`, returning what it read. ``leads`` scopes the lead (the API
    key's mode); a lead outside it, or another partner's, is ``Lead.DoesNotExist``.
    ``savepoint=False``: the caller's own atomic block ends with any error raised here
    (``billing.outcomes.report_outcome``), so a savepoint of its own buys nothing."""
    with transaction.atomic(savepoint=savepoint):
        lead = _locked_lead(leads, lead_id=lead_id, partner_id=partner_id)
        # Checked once the lead is found: a lead not the caller's is a 404 whatever it sent.
        _validate_shape(report)
        report = _normalised(report)
        # Resolved before the replay comparison: "no currency" and "the referral's
        # currency" are the same event.
        report = _with_currency(report, lead.referral_currency)  # type: ignore[attr-defined]
        existing, events = _read_events(lead, partner_id=partner_id, report=report)
        if existing is not None:
            event = _replay(existing, lead=lead, report=report)
            _cache_reversed_by(event, events)
            return Recorded(event, False, lead, events)
        _check_reportable(lead, report)
        target = _reversed_event(events, report) if report.type == EventType.REVERSAL else None
        _check_consistency(events, report)
        event, created = _insert(lead=lead, partner_id=partner_id, report=report, reverses=target)
        if created:
            events.append(event)
            _apply(lead, standing(events))
            _cache_reversed_by(event, events)
        return Recorded(event, created, lead, events)


def _locked_lead(
    leads: QuerySet[Lead] | None, *, lead_id: uuid.UUID, partner_id: uuid.UUID
) -> Lead:
    """The lead, row-locked to commit (the checks against its events, the insert and the
    new status all see one lead no other event changes meanwhile), with its referral's
    currency read in the same query: only the lead's row is locked, not the referral's."""
    queryset = Lead.objects.all() if leads is None else leads
    return (
        queryset.select_for_update(no_key=True, of=("self",))
        .annotate(referral_currency=F("referral__currency"))
        .get(pk=lead_id, partner_id=partner_id)
    )


def _read_events(
    lead: Lead, *, partner_id: uuid.UUID, report: EventReport
) -> tuple[LeadEvent | None, list[LeadEvent]]:
    """In one query: the event stored under the report's id (on any lead of the partner),
    and the lead's events."""
    rows = list(
        LeadEvent.objects.filter(
            Q(lead_id=lead.pk) | Q(partner_id=partner_id, external_id=report.external_id)
        ).select_related("reverses")
    )
    existing = next(
        (e for e in rows if e.partner_id == partner_id and e.external_id == report.external_id),
        None,
    )
    return existing, [e for e in rows if e.lead_id == lead.pk]


def _cache_reversed_by(event: LeadEvent, events: list[LeadEvent]) -> None:
    """Tell the event which reversal (if any) took it back, from the lead's events in
    memory: the response names it without reading it again."""
    reversal = next((e for e in events if e.reverses_id == event.pk), None)
    LeadEvent._meta.get_field("reversed_by").set_cached_value(event, reversal)


def _stored(*, partner_id: uuid.UUID, external_id: str) -> LeadEvent | None:
    return (
        LeadEvent.objects.filter(partner_id=partner_id, external_id=external_id)
        .select_related("reverses")
        .first()
    )


def _replay(existing: LeadEvent, *, lead: Lead, report: EventReport) -> LeadEvent:
    """The event already stored under this id, if the report is that same event again."""
    if existing.lead_id != lead.id or not _same(existing, report):
        raise EventError(
            "this event_id was already used for a different event",
            field="event_id",
            code="event_id_conflict",
        )
    return existing


def _check_reportable(lead: Lead, report: EventReport) -> None:
    if lead.status in ANSWER_MAY_BE_LOST:
        _take_the_partners_word(lead)
    if lead.status not in REPORTABLE_STATUSES:
        raise EventError(
            f"the lead was not delivered to you (status {lead.status})",
            field="lead",
            code="lead_not_delivered",
        )
    _check_dates(lead, report)


def _take_the_partners_word(lead: Lead) -> None:
    """A partner reports on a lead whose post we attempted but whose answer we do not have
    (the worker is still recording it, died mid-post, or the answer was lost: a timeout,
    a reset, garbage): the disclosure log says whether the partner holds the data. If it
    does, the lead *was* delivered, at the moment the data left (the log is written before
    the post): it becomes delivered and the event applies (and is billed) like any other.
    Never refused for the platform's own loss. A post not yet disclosed is still on its
    way (a retryable 409); a lead never posted stays refused by the caller."""
    sent = gate.disclosed_at(
        subject_id=lead.subject_id,
        partner_id=lead.partner_id,
        reference=delivery.disclosure_reference(lead.id),
    )
    if sent is None:
        if lead.status == LeadStatus.DELIVERING:
            raise EventError(
                "the lead's delivery to you is still being recorded; "
                "send the event again in a moment",
                field="lead",
                code="delivery_in_progress",
            )
        return
    lead.status, lead.delivered_at, lead.claim_expires_at = LeadStatus.DELIVERED, sent, None
    # Saved now, with the event (the caller's transaction): a post still in flight finds
    # the lead settled (only a claim on a lead still delivering records an outcome).
    lead.save(update_fields=["status", "delivered_at", "claim_expires_at", "updated_at"])
    delivery.notify_delivered(lead=lead, delivered_at=sent)


def _insert(
    *, lead: Lead, partner_id: uuid.UUID, report: EventReport, reverses: LeadEvent | None
) -> tuple[LeadEvent, bool]:
    """Create the event; (the stored one, False) if a concurrent request stored this
    event id first."""
    event = LeadEvent(
        reverses=reverses,
        lead=lead,
        partner_id=partner_id,
        external_id=report.external_id,
        type=report.type,
        occurred_at=report.occurred_at,
        amount=report.amount,
        apr=report.apr,
        principal=report.principal,
        currency=report.currency,
        reason=report.reason,
        revenue_period=report.period,
    )
    if _insert_unless_taken(event):
        return event, True
    # The same event id was stored by a concurrent request since we looked (the lead lock
    # makes that rare: only another lead's event with this id can race).
    existing = _stored(partner_id=partner_id, external_id=report.external_id)
    if existing is None:  # not our event id: the reversed event's unique slot
        raise EventError(
            f"event {report.reverses!r} was already reversed",
            field="reverses",
            code="already_reversed",
        )
    return _replay(existing, lead=lead, report=report), False


def _insert_unless_taken(event: LeadEvent) -> bool:
    """INSERT the event unless a unique slot it needs is taken (its event id, or the
    reversed event's reversal); whether it was inserted. ``ON CONFLICT DO NOTHING``
    rather than a savepoint to catch the IntegrityError in: one round trip, not three."""
    meta = LeadEvent._meta
    fields = meta.concrete_fields
    columns = [str(f.column) for f in fields]
    quote = connection.ops.quote_name
    values = [f.get_db_prep_save(f.pre_save(event, add=True), connection) for f in fields]
    # Names from the model's metadata only; every value is a parameter.
    sql = (
        f"INSERT INTO {quote(meta.db_table)} ({', '.join(map(quote, columns))}) "  # noqa: S608
        f"VALUES ({', '.join(['%s'] * len(fields))}) ON CONFLICT DO NOTHING RETURNING 1"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, values)
        inserted = cursor.fetchone() is not None
    if inserted:
        event._state.adding, event._state.db = False, connection.alias
    return inserted
