"""From partner events to the charge ledger: every lead's fees brought to what is due.

The ledger of a *chain* (a lead's fee kind; for revenue share, a lead's revenue period) is
a sequence charge, correction, charge, ... whose net is 0 or 1 unit (``Charge``). Charging
never asks "what did this event change?"; it asks, for every chain of a lead, "what is due
now?" and appends the entries that take the chain there (:func:`settle_lead`):

- a fee is *due* while its billable event (accepted -> CPL, approved -> CPA, funded ->
  CPF, revenue -> revenue share) stands, i.e. was not reversed, and the lead has no
  crediting return (``billing.returns``);
- due and no open charge: a charge at the unit's price (``billing.pricing``), converted
  from the reported amount's currency at the rate in force (``billing.fx``), or a
  ``PendingFee`` while no rate is in force;
- not due and an open charge: its exact negative, a ``reversal`` when its event was
  reversed, a ``credit`` (with the reason code) when the lead was returned;
- due, open, but at another price or for another event: corrected (``reprice`` or
  ``reversal``) and charged again.

So accept, reverse, report again books charge, reversal, charge; return, reverse the
return books charge, credit, charge; and the outcome depends only on the set of events,
never on their arrival order or on the path (live, catch-up, approval of a return).

Marginal tiers number a partner's units of a month by event time (``billing.tiers``). A unit
reported late renumbers the units after it; their prices are brought up to date when the
month is invoiced (:func:`retier_months`, also run by the catch-up charger) or whenever
their lead is settled again, under the partner's billing lock held exclusively.

Deciding is ``billing.settlement.settle`` and pricing ``billing.quotes.quote`` on every
path; this module reads and writes for one lead (the live path, a review decision) and
hands many leads to ``billing.catchup`` (the catch-up run, re-tiering a month), which reads
and writes them in batches.

Locks: the live path runs in the transaction that stored the event, under the lead's row
lock (``marketplace.events.record_event``); :func:`settle_lead` then takes the partner's
billing row for sharing (``billing.locks``), which invoicing and re-tiering hold
exclusively, so the chains it reads do not move under it.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection
from datetime import date

from django.db import transaction
from django.utils import timezone

from billing import budgets, catchup, credit, returns, tiers
from billing.locks import hold_billing_lock, share_billing_profile_and_schedules
from billing.models import Charge, ReturnReview, ReviewStatus
from billing.quotes import LivePricer, Schedules, schedule_in_force
from billing.rows import ENTRY_COLUMNS, Entry, EventLike
from billing.settlement import LeadBook, Writes, settle
from marketplace.models import EventType, Lead, LeadEvent

__all__ = [
    "charge_for_event",
    "charge_unbilled_events",
    "decide_return",
    "retier_month",
    "retier_months",
    "schedule_in_force",
    "settle_lead",
]


def settle_lead(
    *,
    lead: Lead,
    events: list[LeadEvent] | None = None,
    fresh: LeadEvent | None = None,
    pricer: LivePricer | None = None,
) -> list[Charge]:
    """Append the entries that bring every chain of the lead to what is due now; the
    caller holds the lead's row lock (or the partner's billing lock exclusively).
    ``events``: all the lead's events, when the caller read them under that lock;
    ``fresh``: an event the caller stored in this transaction (no fee of it waits);
    ``pricer``: the caller's, to reuse what it read (the partner's schedules)."""
    if lead.is_sandbox:
        return []  # sandbox traffic is never billed
    pricer = pricer or LivePricer()
    profile, schedules = share_billing_profile_and_schedules(partner_id=lead.partner_id)
    if schedules is not None:
        pricer.knows(lead.partner_id, Schedules.of(schedules))
    through = profile.invoiced_through
    if events is None:
        events = list(LeadEvent.objects.filter(lead_id=lead.pk))
    for event in events:
        if event.type == EventType.RETURNED and event.reason not in returns.KNOWN_REASONS:
            # Whatever path brought the return here (live, catch-up after an outage), an
            # unknown reason code waits for finance: judged here, idempotently.
            returns.review_return(event=event)
    returned = [e.pk for e in events if e.type == EventType.RETURNED]
    statuses = dict(
        ReturnReview.objects.filter(event_id__in=returned).values_list("event_id", "status")
    )
    if fresh is not None and all(e.pk == fresh.pk for e in events):
        # Every entry is for one of the lead's events: its first event has none to read.
        entries: list[Entry] = []
    else:
        entries = [
            Entry(*row)
            for row in Charge.objects.filter(lead_id=lead.pk).values_list(*ENTRY_COLUMNS)
        ]
    book = LeadBook(lead, list[EventLike](events), entries, statuses, through)
    out = Writes(fresh=frozenset([fresh.pk]) if fresh is not None else frozenset())
    made = settle(book, pricer, out)
    out.flush()
    if made:
        credit.evaluate_credit_limit(partner_id=lead.partner_id, profile=profile)
        budgets.evaluate_budgets(
            partner_id=lead.partner_id, product_ids={entry.product_id for entry in made}
        )
    return [entry.as_charge() for entry in made]


def charge_for_event(
    *,
    event: LeadEvent,
    events: list[LeadEvent] | None = None,
    pricer: LivePricer | None = None,
) -> list[Charge]:
    """The live path: called in the transaction that stored ``event``, under its lead's
    lock. A return is judged first (review or not); then the lead is settled. ``events``
    (from the ``record`` that stored ``event`` just now): all the lead's events, read
    under that lock; ``event`` is then new, so no fee of it is waiting for a rate."""
    if event.lead.is_sandbox:
        return []
    if event.type == EventType.RETURNED:
        returns.review_return(event=event)
    fresh = event if events is not None else None
    return settle_lead(lead=event.lead, events=events, fresh=fresh, pricer=pricer)


def decide_return(
    *, review_id: uuid.UUID, approve: bool, user: object = None, note: str = ""
) -> list[Charge]:
    """Approve or reject a pending return, then settle its lead (an approved crediting
    return credits every open charge); deciding a decided review again changes nothing."""
    with transaction.atomic():
        review = ReturnReview.objects.get(pk=review_id)
        # The lock record_event holds: a charge arriving while we decide waits for us.
        lead = Lead.objects.select_for_update().get(pk=review.lead_id)
        updated = ReturnReview.objects.filter(pk=review_id, status=ReviewStatus.PENDING).update(
            status=ReviewStatus.APPROVED if approve else ReviewStatus.REJECTED,
            decided_at=timezone.now(),
            decided_by=user if getattr(user, "pk", None) else None,
            note=note[:200],
        )
        if not updated:
            return []
        return settle_lead(lead=lead)


def retier_months(
    *, partner_id: uuid.UUID, months: set[date], settled: Collection[uuid.UUID] = ()
) -> list[Entry]:
    """Bring the tiered units of these months to their prices by event-time numbering:
    every lead with a unit in one of them is settled (in batches, ``billing.catchup``),
    but those in ``settled``: the caller settled them with unit numbers that are still
    the months' (the catch-up run). Runs in the caller's transaction under the partner's
    billing lock held exclusively (invoicing, catch-up): no lead is settled concurrently,
    so no lead lock is needed."""
    lead_ids: set[uuid.UUID] = set()
    for month in sorted(tiers.tiered_months(partner_id, months)):
        lead_ids.update(tiers.unit_lead_ids(partner_id=partner_id, month=month))
    ordered = sorted(lead_ids.difference(settled))
    units = catchup.UnitNumbers()
    made: list[Entry] = []
    for start in range(0, len(ordered), catchup.BATCH):
        chunk = ordered[start : start + catchup.BATCH]
        made += catchup.settle_leads(chunk, units=units, lock=False)
    return made


def retier_month(*, partner_id: uuid.UUID, month: date) -> int:
    """Re-price one partner's month by event-time numbering, in its own transaction."""
    with transaction.atomic():
        hold_billing_lock(partner_id=partner_id)
        return len(retier_months(partner_id=partner_id, months={month}))


def charge_unbilled_events() -> int:
    """The catch-up path: settle every live lead with a billable event that has no entry
    yet (a schedule or exchange rate added late, a fee waiting for a rate), in batches
    (``billing.catchup``), then bring the prices of the months it touched up to date: the
    leads it did not settle, and those it did when a unit arrived meanwhile in one of the
    months. Returns the entries made."""
    lead_ids = catchup.unbilled_lead_ids()
    units = catchup.UnitNumbers()
    made = catchup.charge_in_batches(lead_ids, units=units)
    count = len(made)
    for partner_id, months in sorted(catchup.tiered_charge_months(made).items()):
        with transaction.atomic():
            hold_billing_lock(partner_id=partner_id)
            current = units.unchanged(partner_id=partner_id, months=months)
            settled = lead_ids if current else ()
            count += len(retier_months(partner_id=partner_id, months=months, settled=settled))
    return count
