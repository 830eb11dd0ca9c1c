"""From partner events to the charge ledger, exactly once (database constraints decide).

A billable event makes one charge by the schedule in force at the event's time. A return
makes a credit for every charge on the lead, whichever arrives first: a charge stored
after the lead's return is credited at once, so the outcome is independent of arrival order.
"""

from __future__ import annotations

from datetime import datetime

from django.db import IntegrityError, transaction
from django.db.models import Q

from billing.models import Charge, EntryType, FeeSchedule
from billing.pricing import EVENT_FEE_KIND, FeeTerms, price
from marketplace.models import EventType, Lead, LeadEvent


def schedule_in_force(*, lead: Lead, at: datetime) -> FeeSchedule | None:
    """The product's own schedule if there is one at that time, else the partner's."""
    spans = FeeSchedule.objects.filter(
        Q(effective_to__isnull=True) | Q(effective_to__gt=at),
        partner_id=lead.partner_id,
        effective_from__lte=at,
    )
    own = spans.filter(product_id=lead.product_id).order_by("-effective_from").first()
    return own or spans.filter(product__isnull=True).order_by("-effective_from").first()


def _insert(charge: Charge) -> Charge | None:
    try:
        with transaction.atomic():
            charge.save(force_insert=True)
    except IntegrityError:
        return None  # already charged (or credited): exactly once by constraint
    return charge


def _credit(charge: Charge, return_event: LeadEvent) -> Charge | None:
    return _insert(
        Charge(
            partner_id=charge.partner_id,
            lead_id=charge.lead_id,
            product_id=charge.product_id,
            event=return_event,
            schedule_id=charge.schedule_id,
            kind=charge.kind,
            entry_type=EntryType.CREDIT,
            amount=-charge.amount,
            currency=charge.currency,
            occurred_at=return_event.occurred_at,
        )
    )


def charge_for_event(*, event: LeadEvent) -> list[Charge]:
    """The ledger entries this event makes (none if it made them already)."""
    lead = event.lead
    if lead.is_sandbox:
        return []  # sandbox traffic is never billed
    if event.type == EventType.RETURNED:
        charges = Charge.objects.filter(lead=lead, entry_type=EntryType.CHARGE)
        return [c for c in (_credit(charge, event) for charge in charges) if c]
    kind = EVENT_FEE_KIND.get(event.type)
    if kind is None:
        return []
    schedule = schedule_in_force(lead=lead, at=event.occurred_at)
    if schedule is None:
        return []  # reconciliation lists billable events without a schedule
    terms = FeeTerms(
        schedule.cpl, schedule.cpa, schedule.cpf_rate, schedule.cpf_min, schedule.cpf_max
    )
    amount = price(kind, terms, principal=event.principal)
    charge = _insert(
        Charge(
            partner_id=lead.partner_id,
            lead=lead,
            product_id=lead.product_id,
            event=event,
            schedule=schedule,
            kind=kind,
            entry_type=EntryType.CHARGE,
            amount=amount,
            currency=schedule.currency,
            occurred_at=event.occurred_at,
        )
    )
    if charge is None:
        return []
    made = [charge]
    returned = lead.events.filter(type=EventType.RETURNED).order_by("occurred_at").first()
    if returned is not None:
        credit = _credit(charge, returned)
        if credit:
            made.append(credit)
    return made


def charge_unbilled_events() -> int:
    """Catch up on billable events that have no charge (e.g. a schedule added late)."""
    made = 0
    pending = (
        LeadEvent.objects.filter(
            type__in=[*EVENT_FEE_KIND, EventType.RETURNED],
            lead__is_sandbox=False,
            charges__isnull=True,
        )
        .select_related("lead")
        .order_by("occurred_at")
    )
    for event in pending.iterator(chunk_size=1000):
        with transaction.atomic():
            # The lock record_event holds: a return reported meanwhile waits and then
            # credits this charge; unlocked, each would miss the other's uncommitted row.
            Lead.objects.select_for_update().get(pk=event.lead_id)
            made += len(charge_for_event(event=event))
    return made
