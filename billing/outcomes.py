"""A partner's outcome report, start to finish: the one place its consequences are composed.

``POST /api/v1/partner/leads/{id}/events`` (``billing.api.PartnerLeadEventView``) ->
:func:`report_outcome`, in one transaction:

1. ``marketplace.events.record_event``: the report is checked, stored once by the partner's
   event id and the lead's status derived from its standing events (the lead row locked);
2. ``billing.charging.charge_for_event``: the lead's fee chains are brought to what is due
   (charges, reversals, credits, re-bookings), then the partner's budgets and credit limit
   are evaluated and routing held or released (``billing.budgets``, ``billing.credit``);
3. ``billing.tasks.retier_month`` through the outbox (``marketplace.outbox``: written in
   this transaction, published after commit) when the event renumbered its month's tiered
   units (``billing.tiers.renumbers``).

The event and its charges commit together or not at all: a failure answers the partner with
an error and its retry with the same event id starts again. Billing sits above marketplace,
so the composition lives here and marketplace knows nothing of fees.
"""

from __future__ import annotations

import uuid

from django.db import transaction
from django.db.models import QuerySet

from billing import tasks
from billing.charging import charge_for_event
from billing.quotes import LivePricer
from billing.tiers import renumbers
from marketplace import outbox
from marketplace.events import EventReport, record
from marketplace.models import Lead, LeadEvent


def report_outcome(
    *,
    lead_id: uuid.UUID,
    partner_id: uuid.UUID,
    report: EventReport,
    leads: QuerySet[Lead] | None = None,
) -> tuple[LeadEvent, bool]:
    """Store a partner's event and book what it changes; (event, created). A replay of a
    stored event changes nothing. ``leads`` scopes the lead (``record``): outside it,
    ``Lead.DoesNotExist``."""
    with transaction.atomic():
        # No savepoint inside: this block rolls back whatever record raises.
        recorded = record(
            lead_id=lead_id, partner_id=partner_id, report=report, leads=leads, savepoint=False
        )
        event, created = recorded.event, recorded.created
        if created:
            # The lead's events as recorded (locked, read once): not read again.
            pricer = LivePricer()
            charge_for_event(event=event, events=recorded.events, pricer=pricer)
            # With the schedules charging read: an untiered month is not counted.
            renumbered = renumbers(event, pricer=pricer)
            if renumbered is not None:
                renumbered_partner, month = renumbered
                # An outbox message in this transaction: re-pricing is never lost.
                outbox.enqueue(tasks.retier_month, str(renumbered_partner), month.isoformat())
    return event, created
