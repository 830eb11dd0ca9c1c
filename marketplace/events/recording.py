"""Recording a reported event: the lead locked to commit, a replay of an event id answered
with the stored event, the partner's word taken on a lead whose post's answer was lost, the
event inserted once (a unique slot decides races) and the lead's status and outcome values
recomputed from the events still standing.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from django.db import connection, transaction
from django.db.models import F, Q, QuerySet

from consent import gate
from marketplace import delivery
from marketplace.events.report import (
    EventError,
    EventReport,
    _normalised,
    _same,
    _validate_shape,
    _with_currency,
)
from marketplace.events.rules import (
    _check_consistency,
    _check_dates,
    _reversed_event,
    derive_status,
    standing,
)
from marketplace.models import REPORTABLE_STATUSES, EventType, Lead, LeadEvent, LeadStatus

# Statuses of a lead whose post we may have sent without recording the partner's answer.
ANSWER_MAY_BE_LOST = {LeadStatus.MATCHED, LeadStatus.DELIVERING, LeadStatus.DELIVERY_FAILED}


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
