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

Locks: the live path runs in the transaction that stored the event, under the lead's row
lock (``marketplace.events.record_event``); :func:`settle_lead` then takes the partner's
billing row for sharing (``billing.locks``), which invoicing and re-tiering hold
exclusively, so the chains it reads do not move under it.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal

from django.db import transaction
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from billing import budgets, credit, fx, returns, tiers
from billing.locks import hold_billing_lock, period_for, share_billing_lock
from billing.models import (
    Charge,
    EntryType,
    FeeSchedule,
    PendingFee,
    ReturnReview,
    ReviewStatus,
)
from billing.money import to_cents
from billing.periods import month_of
from billing.pricing import EVENT_FEE_KIND, FeeTerms, Tier, price
from marketplace.events import standing
from marketplace.models import EventType, Lead, LeadEvent

ChainKey = tuple[str, str]  # (kind, chain)


class Schedules:
    """A partner's fee schedules (with their tiers), read once and picked from in memory:
    settling a lead prices several units, each by the schedule in force at its time."""

    def __init__(self, partner_id: uuid.UUID) -> None:
        self._all = list(
            FeeSchedule.objects.filter(partner_id=partner_id)
            .prefetch_related("tiers")
            .order_by("-effective_from")
        )

    def in_force(self, *, product_id: uuid.UUID, at: datetime) -> FeeSchedule | None:
        """The product's own schedule if there is one at that time, else the partner's."""
        spans = [
            s
            for s in self._all
            if s.effective_from <= at and (s.effective_to is None or s.effective_to > at)
        ]
        own = next((s for s in spans if s.product_id == product_id), None)
        return own or next((s for s in spans if s.product_id is None), None)


def schedule_in_force(*, lead: Lead, at: datetime) -> FeeSchedule | None:
    return Schedules(lead.partner_id).in_force(product_id=lead.product_id, at=at)


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


@dataclass(frozen=True)
class Quote:
    """What one unit costs, in ``currency``, and how a reported amount was converted."""

    amount: Decimal
    currency: str
    schedule: FeeSchedule | None
    unit: int | None
    conversion: fx.Conversion | None = None


@dataclass(frozen=True)
class NeedsRate:
    """The unit cannot be priced yet: no ``from_currency`` -> ``to_currency`` rate in force."""

    from_currency: str
    to_currency: str


def _converted(
    amount: Decimal, *, source: str, target: str, at: datetime
) -> tuple[Decimal, fx.Conversion | None] | NeedsRate:
    """``amount`` in ``target`` (and the conversion, when there was one)."""
    if source == target:
        return amount, None
    conversion = fx.convert(amount=amount, from_currency=source, to_currency=target, at=at)
    if conversion is None:
        return NeedsRate(source, target)
    return conversion.amount, conversion


def quote(
    event: LeadEvent, lead: Lead, kind: str, schedules: Schedules
) -> Quote | NeedsRate | None:
    """The price of the unit ``event`` makes (None: no schedule in force, and no bid)."""
    schedule = schedules.in_force(product_id=lead.product_id, at=event.occurred_at)
    if kind == "cpl" and lead.bid_amount is not None:
        # An auction lead pays its bid (tiers never discount a price the partner bid),
        # in the schedule's currency when there is one.
        target = schedule.currency if schedule is not None else lead.bid_currency
        bid = _converted(
            lead.bid_amount, source=lead.bid_currency, target=target, at=event.occurred_at
        )
        if isinstance(bid, NeedsRate):
            return bid
        amount, conversion = bid
        return Quote(to_cents(amount), target, schedule, None, conversion)
    if schedule is None:
        return None
    terms = terms_of(schedule)
    unit = tiers.unit_number(event) if terms.tiers and kind in tiers.TIERED_KINDS else None
    # CPF is a share of the principal, revenue share of the revenue: both reported by the
    # partner in the event's currency, converted before pricing.
    reported = {"cpf": event.principal, "revshare": event.amount}.get(kind)
    conversion = None
    if reported is not None:
        converted = _converted(
            reported, source=event.currency, target=schedule.currency, at=event.occurred_at
        )
        if isinstance(converted, NeedsRate):
            return converted
        reported, conversion = converted
    amount = price(
        kind,
        terms,
        principal=reported if kind == "cpf" else None,
        unit=unit or 1,
        revenue=reported if kind == "revshare" else None,
    )
    return Quote(amount, schedule.currency, schedule, unit, conversion)


class _Chain:
    """The entries of one chain, in order, as appended so far."""

    def __init__(
        self, lead: Lead, key: ChainKey, entries: list[Charge], invoiced_through: date | None
    ) -> None:
        self.lead, (self.kind, self.chain) = lead, key
        self.entries = sorted(entries, key=lambda e: e.seq)
        # Read under the partner's billing lock, held until commit (``settle_lead``).
        self.invoiced_through = invoiced_through

    @property
    def open_charge(self) -> Charge | None:
        last = self.entries[-1] if self.entries else None
        return last if last is not None and last.entry_type == EntryType.CHARGE else None

    @property
    def last(self) -> Charge | None:
        return self.entries[-1] if self.entries else None

    def append(self, entry: Charge) -> Charge:
        last = self.last
        entry.seq = last.seq + 1 if last else 1
        entry.prev_seq = last.seq if last else None
        entry.chain = self.chain
        entry.period = period_for(at=entry.occurred_at, invoiced_through=self.invoiced_through)
        # A position taken by someone else is a bug in the locking, not a duplicate to
        # ignore: let the IntegrityError end the transaction.
        entry.save(force_insert=True)
        self.entries.append(entry)
        return entry

    def correct(
        self, *, event: LeadEvent, entry_type: str, at: datetime, reason: str = ""
    ) -> Charge:
        charge = self.open_charge
        assert charge is not None
        return self.append(
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
                occurred_at=at,
                corrects=charge,
                reason=reason,
            )
        )

    def charge(self, *, event: LeadEvent, price_of: Quote, at: datetime) -> Charge:
        conversion = price_of.conversion
        return self.append(
            Charge(
                partner_id=self.lead.partner_id,
                lead_id=self.lead.pk,
                product_id=self.lead.product_id,
                event=event,
                schedule=price_of.schedule,
                kind=self.kind,
                entry_type=EntryType.CHARGE,
                amount=price_of.amount,
                currency=price_of.currency,
                unit_number=price_of.unit,
                source_amount=conversion.source_amount if conversion else None,
                source_currency=conversion.source_currency if conversion else "",
                fx_rate=conversion.rate.rate if conversion else None,
                exchange_rate=conversion.rate if conversion else None,
                occurred_at=at,
            )
        )


def _chain_key(event: LeadEvent) -> ChainKey:
    kind = EVENT_FEE_KIND[event.type]
    return kind, event.revenue_period if kind == "revshare" else ""


def _due(events: list[LeadEvent]) -> dict[ChainKey, LeadEvent]:
    """The billable event each chain is due for (none when the lead is credited)."""
    due: dict[ChainKey, LeadEvent] = {}
    for event in sorted(standing(events), key=lambda e: (e.occurred_at, e.external_id)):
        if event.type in EVENT_FEE_KIND:
            due[_chain_key(event)] = event  # one standing per chain (marketplace's rule)
    return due


def _rebook_time(chain: _Chain, events: list[LeadEvent], event: LeadEvent) -> datetime:
    """When a charge is booked: its event's time, or, booked again after a return that
    credited it was reversed, the time of that reversal."""
    last = chain.last
    if last is not None and last.entry_type == EntryType.CREDIT:
        undone = [e for e in events if e.reverses_id == last.event_id]
        if undone:
            return max(event.occurred_at, undone[0].occurred_at)
    return event.occurred_at


def settle_lead(*, lead: Lead) -> list[Charge]:
    """Append the entries that bring every chain of the lead to what is due now; the
    caller holds the lead's row lock (or the partner's billing lock exclusively)."""
    if lead.is_sandbox:
        return []  # sandbox traffic is never billed
    through = share_billing_lock(partner_id=lead.partner_id)
    events = list(LeadEvent.objects.filter(lead_id=lead.pk))
    reversal_of = {
        e.reverses_id: e for e in events if e.type == EventType.REVERSAL and e.reverses_id
    }
    entries: dict[ChainKey, list[Charge]] = defaultdict(list)
    for entry in Charge.objects.filter(lead_id=lead.pk):
        entries[(entry.kind, entry.chain)].append(entry)
    for event in events:
        if event.type == EventType.RETURNED and event.reason not in returns.KNOWN_REASONS:
            # Whatever path brought the return here (live, catch-up after an outage), an
            # unknown reason code waits for finance: judged here, idempotently.
            returns.review_return(event=event)
    credited_by = returns.crediting_return(events)
    due = {} if credited_by is not None else _due(events)
    schedules = Schedules(lead.partner_id)
    made: list[Charge] = []
    for key in sorted(set(entries) | set(due)):
        chain = _Chain(lead, key, entries.get(key, []), through)
        made += _settle_chain(chain, due.get(key), credited_by, reversal_of, events, schedules)
    if made:
        credit.evaluate_credit_limit(partner_id=lead.partner_id)
        budgets.evaluate_budgets(
            partner_id=lead.partner_id, product_ids={entry.product_id for entry in made}
        )
    return made


def _settle_chain(
    chain: _Chain,
    target: LeadEvent | None,
    credited_by: LeadEvent | None,
    reversal_of: dict[uuid.UUID, LeadEvent],
    events: list[LeadEvent],
    schedules: Schedules,
) -> list[Charge]:
    made: list[Charge] = []
    current = chain.open_charge
    if current is not None:
        reversal = reversal_of.get(current.event_id)
        undo = reversal is not None or (target is None and credited_by is not None)
        if undo:
            # A unit is corrected at its current price: renumbered by a unit reported
            # late, it is repriced first, so the correction takes back what is due for it.
            priced = next(e for e in events if e.id == current.event_id)
            made += _reprice(chain, priced, quote(priced, chain.lead, chain.kind, schedules))
        if reversal is not None:
            # Its event was taken back: the partner's reversal undoes the charge.
            made.append(
                chain.correct(
                    event=reversal, entry_type=EntryType.REVERSAL, at=reversal.occurred_at
                )
            )
        elif undo and credited_by is not None:
            made.append(
                chain.correct(
                    event=credited_by,
                    entry_type=EntryType.CREDIT,
                    at=credited_by.occurred_at,
                    reason=returns.code(credited_by),
                )
            )
    if target is None:
        return made
    price_of = quote(target, chain.lead, chain.kind, schedules)
    if price_of is None:
        return made  # no schedule in force: reconciliation explains it; catch-up books it
    if isinstance(price_of, NeedsRate):
        _wait_for_rate(target, chain, price_of)
        return made
    if chain.open_charge is not None:
        return made + _reprice(chain, target, price_of)
    made.append(
        chain.charge(event=target, price_of=price_of, at=_rebook_time(chain, events, target))
    )
    PendingFee.objects.filter(event=target, kind=chain.kind, resolved_at__isnull=True).update(
        resolved_at=timezone.now()
    )
    return made


def _reprice(chain: _Chain, event: LeadEvent, price_of: Quote | NeedsRate | None) -> list[Charge]:
    """Correct the open charge for ``event`` and charge it again when its price is no
    longer what the rules give (a unit renumbered by a late one); both dated at the
    charge's own time, so they land in its month while that is open."""
    current = chain.open_charge
    if (
        current is None
        or current.event_id != event.id
        or not isinstance(price_of, Quote)
        or (current.amount, current.currency) == (price_of.amount, price_of.currency)
    ):
        return []
    return [
        chain.correct(event=event, entry_type=EntryType.REPRICE, at=current.occurred_at),
        chain.charge(event=event, price_of=price_of, at=current.occurred_at),
    ]


def _wait_for_rate(event: LeadEvent, chain: _Chain, missing: NeedsRate) -> None:
    PendingFee.objects.get_or_create(
        event=event,
        kind=chain.kind,
        resolved_at=None,
        defaults=dict(
            partner_id=chain.lead.partner_id,
            lead_id=chain.lead.pk,
            from_currency=missing.from_currency,
            to_currency=missing.to_currency,
            occurred_at=event.occurred_at,
        ),
    )


def charge_for_event(*, event: LeadEvent) -> list[Charge]:
    """The live path: called in the transaction that stored ``event``, under its lead's
    lock. A return is judged first (review or not); then the lead is settled."""
    if event.lead.is_sandbox:
        return []
    if event.type == EventType.RETURNED:
        returns.review_return(event=event)
    return settle_lead(lead=event.lead)


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


def retier_months(*, partner_id: uuid.UUID, months: set[date]) -> list[Charge]:
    """Bring the tiered units of these months to their prices by event-time numbering.
    Runs in the caller's transaction under the partner's billing lock held exclusively
    (invoicing, catch-up): no lead is settled concurrently, so no lead lock is needed."""
    made: list[Charge] = []
    for month in sorted(tiers.tiered_months(partner_id, months)):
        lead_ids = tiers.unit_lead_ids(partner_id=partner_id, month=month)
        for lead in Lead.objects.filter(pk__in=lead_ids):
            made += settle_lead(lead=lead)
    return made


def retier_month(*, partner_id: uuid.UUID, month: date) -> int:
    """Re-price one partner's month by event-time numbering, in its own transaction."""
    with transaction.atomic():
        hold_billing_lock(partner_id=partner_id)
        return len(retier_months(partner_id=partner_id, months={month}))


def charge_unbilled_events() -> int:
    """The catch-up path: settle every live lead with a billable event that has no entry
    yet (a schedule or exchange rate added late, a fee waiting for a rate), then bring the
    prices of the months it touched up to date. Returns the entries made."""
    standing_returns = LeadEvent.objects.filter(
        ~Exists(LeadEvent.objects.filter(reverses_id=OuterRef("pk"))),
        lead_id=OuterRef("lead_id"),
        type=EventType.RETURNED,
    )
    waiting = ReturnReview.objects.filter(event_id=OuterRef("pk")).exclude(
        status=ReviewStatus.APPROVED
    )
    unbilled = LeadEvent.objects.filter(
        ~Exists(Charge.objects.filter(event_id=OuterRef("pk"))),
        # A reversed event is never due ...
        ~Exists(LeadEvent.objects.filter(reverses_id=OuterRef("pk"))),
        # ... nor is anything on a lead all of whose standing returns credit it (skipping
        # those keeps every run from settling every returned lead again).
        ~(
            Exists(standing_returns)
            & ~Exists(
                standing_returns.filter(Q(Exists(waiting)) | ~Q(reason__in=returns.KNOWN_REASONS))
            )
        ),
        type__in=list(EVENT_FEE_KIND),
        lead__is_sandbox=False,
    )
    lead_ids = set(unbilled.values_list("lead_id", flat=True).distinct())
    lead_ids |= set(
        PendingFee.objects.filter(resolved_at__isnull=True).values_list("lead_id", flat=True)
    )
    # Returns that reached us while billing was away are judged even with nothing to credit.
    lead_ids |= set(
        LeadEvent.objects.filter(
            ~Exists(ReturnReview.objects.filter(event_id=OuterRef("pk"))),
            type=EventType.RETURNED,
            lead__is_sandbox=False,
        )
        .exclude(reason__in=returns.KNOWN_REASONS)
        .values_list("lead_id", flat=True)
    )
    touched: dict[uuid.UUID, set[date]] = {}
    made = 0
    for lead_id in sorted(lead_ids):
        with transaction.atomic():
            # The lock record_event holds: a return reported meanwhile waits, then sees
            # this charge and credits it.
            lead = Lead.objects.select_for_update().get(pk=lead_id)
            entries = settle_lead(lead=lead)
        made += len(entries)
        for entry in entries:
            if entry.kind in tiers.TIERED_KINDS and entry.entry_type == EntryType.CHARGE:
                touched.setdefault(entry.partner_id, set()).add(month_of(entry.event.occurred_at))
    for partner_id, months in touched.items():
        with transaction.atomic():
            hold_billing_lock(partner_id=partner_id)
            made += len(retier_months(partner_id=partner_id, months=months))
    return made
