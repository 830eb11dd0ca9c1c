"""From partner events to the charge ledger, exactly once (database constraints decide).

- A billable event (accepted, approved, funded) makes one charge by the schedule in force
  at the event's time; an auction lead's CPL is its winning bid.
- A revenue event (the partner's revenue on a funded loan for one period) makes one
  ``revshare`` charge per event: the schedule's ``revshare_rate`` times its amount, never
  tiered. A lead may have several (one per period); each is corrected on its own.
- A partner's reversal of an earlier event makes a ``reversal`` entry, the exact negative
  of what that event was charged.
- A return inside the window credits every charge on the lead with its reason code,
  unless it waits for finance's approval (``billing.returns``) -- revenue share charges
  included, like every other charge on the lead (also those reported after the return).
- A lead has at most one correction per fee kind (a return or a reversal, whichever came
  first), so credits never exceed charges; a revenue share charge has at most one
  correction of its own.

Whichever arrives first, the other catches up: a charge stored after its event was
reversed, or after the lead's creditable return, is corrected at once. Everything runs in
the transaction that stored the event, under the lead's row lock (``record_event``), so
the outcome does not depend on arrival order.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Q

from billing import credit, returns
from billing.locks import billing_period
from billing.models import Charge, EntryType, FeeSchedule
from billing.pricing import EVENT_FEE_KIND, FeeTerms, Tier, price
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


def terms_of(schedule: FeeSchedule) -> FeeTerms:
    return FeeTerms(
        cpl=schedule.cpl,
        cpa=schedule.cpa,
        cpf_rate=schedule.cpf_rate,
        cpf_min=schedule.cpf_min,
        cpf_max=schedule.cpf_max,
        revshare_rate=schedule.revshare_rate,
        tiers=tuple(Tier(t.from_count, t.cpl, t.cpa, t.cpf_rate) for t in schedule.tiers.all()),
    )


def month_bounds(at: datetime) -> tuple[datetime, datetime]:
    start = datetime(at.year, at.month, 1, tzinfo=UTC)
    end = datetime(at.year + at.month // 12, at.month % 12 + 1, 1, tzinfo=UTC)
    return start, end


def _unit_number(*, schedule: FeeSchedule, partner_id: Any, kind: str, at: datetime) -> int:
    """The number of this unit of ``kind`` in the partner's month (tiers only)."""
    # Tiered pricing counts the month's units: lock the schedule so two events of the
    # same partner cannot both count n-1 and be priced as the n-th unit.
    FeeSchedule.objects.select_for_update().filter(pk=schedule.pk).first()
    start, end = month_bounds(at)
    done = Charge.objects.filter(
        partner_id=partner_id,
        kind=kind,
        entry_type=EntryType.CHARGE,
        currency=schedule.currency,
        occurred_at__gte=start,
        occurred_at__lt=end,
    ).count()
    return done + 1


def _insert(charge: Charge) -> Charge | None:
    charge.period = billing_period(partner_id=charge.partner_id, at=charge.occurred_at)
    try:
        with transaction.atomic():
            charge.save(force_insert=True)
    except IntegrityError:
        return None  # already charged or corrected: exactly once by constraint
    return charge


def correct(
    charge: Charge, *, event: LeadEvent, entry_type: str, reason: str = ""
) -> Charge | None:
    """The negative entry offsetting ``charge`` (None if the lead's kind was corrected)."""
    return _insert(
        Charge(
            partner_id=charge.partner_id,
            lead_id=charge.lead_id,
            product_id=charge.product_id,
            event=event,
            schedule_id=charge.schedule_id,
            kind=charge.kind,
            entry_type=entry_type,
            amount=-charge.amount,
            currency=charge.currency,
            occurred_at=event.occurred_at,
            corrects=charge,
            reason=reason,
        )
    )


def _price_event(event: LeadEvent, lead: Lead, kind: str) -> Charge | None:
    schedule = schedule_in_force(lead=lead, at=event.occurred_at)
    bid = lead.bid_amount if kind == "cpl" else None
    if schedule is None and bid is None:
        return None  # reconciliation lists billable events without a schedule
    if schedule is None:
        assert bid is not None
        amount, currency = price(kind, FeeTerms(bid, bid, bid, bid, None), bid=bid), None
    else:
        terms = terms_of(schedule)
        unit = (
            _unit_number(
                schedule=schedule, partner_id=lead.partner_id, kind=kind, at=event.occurred_at
            )
            if terms.tiers and bid is None and kind != "revshare"
            else 1
        )
        amount = price(
            kind,
            terms,
            principal=event.principal,
            unit=unit,
            bid=bid,
            revenue=event.amount if kind == "revshare" else None,
        )
        currency = schedule.currency
    return Charge(
        partner_id=lead.partner_id,
        lead=lead,
        product_id=lead.product_id,
        event=event,
        schedule=schedule,
        kind=kind,
        entry_type=EntryType.CHARGE,
        amount=amount,
        # Bids are made in the platform's currency (Lead.bid_amount).
        currency=currency or settings.DEFAULT_CURRENCY,
        occurred_at=event.occurred_at,
    )


def _charge(event: LeadEvent, lead: Lead, kind: str) -> list[Charge]:
    unsaved = _price_event(event, lead, kind)
    charge = _insert(unsaved) if unsaved is not None else None
    if charge is None:
        return []
    made = [charge]
    reversal = LeadEvent.objects.filter(reverses=event).first()
    if reversal is not None:
        fix = correct(charge, event=reversal, entry_type=EntryType.REVERSAL)
    else:
        returned = returns.creditable_return(lead)
        fix = (
            correct(
                charge, event=returned, entry_type=EntryType.CREDIT, reason=returns.code(returned)
            )
            if returned is not None
            else None
        )
    if fix is not None:
        made.append(fix)
    return made


def _reverse(event: LeadEvent) -> list[Charge]:
    if event.reverses_id is None:
        return []
    charges = Charge.objects.filter(event_id=event.reverses_id, entry_type=EntryType.CHARGE)
    made = [correct(c, event=event, entry_type=EntryType.REVERSAL) for c in charges]
    return [c for c in made if c]


def charge_for_event(*, event: LeadEvent) -> list[Charge]:
    """The ledger entries this event makes (none if it made them already)."""
    lead = event.lead
    if lead.is_sandbox:
        return []  # sandbox traffic is never billed
    if event.type == EventType.RETURNED:
        made = returns.apply_return(event=event)
    elif event.type == EventType.REVERSAL:
        made = _reverse(event)
    elif event.type in EVENT_FEE_KIND:
        made = _charge(event, lead, EVENT_FEE_KIND[event.type])
    else:
        made = []
    if made:
        credit.evaluate_credit_limit(partner_id=lead.partner_id)
    return made


def charge_unbilled_events() -> int:
    """Catch up on billable events that have no charge (e.g. a schedule added late); the
    charge path corrects them at once if they were reversed or returned meanwhile."""
    made = 0
    pending = (
        LeadEvent.objects.filter(
            type__in=list(EVENT_FEE_KIND),
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
