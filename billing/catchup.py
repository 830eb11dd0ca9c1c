"""The catch-up charger: the events billing could not price when they arrived (no fee
schedule yet, no exchange rate, billing away), booked in set-based batches.

:func:`charge_unbilled_events` (beat, and the admin after a rate is entered) finds the
live leads with something to book, then settles them :data:`BATCH` leads at a time, one
transaction per batch (:func:`settle_leads`):

1. lock the batch's leads (``FOR UPDATE``, in id order: the lock ``record_event`` holds, so
   a partner event for one of them waits for the batch and then sees its charges), then
   the partners' billing rows for sharing (``billing.locks``, in id order);
2. read, each in one query and as plain rows (``billing.rows``), the leads' events, their
   ledger entries, the review status of their returns, the fees waiting for a rate, the
   partners' schedules and every exchange rate; the tier unit numbers of the months
   involved come from :class:`UnitNumbers`;
3. decide every lead with ``billing.settlement.settle``, the live path's own code, pricing
   with ``billing.quotes.quote`` (``billing.pricing.price``, ``billing.fx.conversion``);
4. write the batch's entries in one COPY (``billing.settlement.insert_entries``), the fees
   now waiting for a rate in one INSERT, then evaluate each partner's credit limit and
   budgets once.

Exactly once is the database's: a chain position is unique and refers to the one before
it, so a second run (or a live event racing the batch) books nothing twice; the locks make
such a collision a bug to surface (an IntegrityError rolls the batch back), not a duplicate
to skip. Afterwards the months whose tiered units were charged are re-tiered
(``billing.charging.retier_months``, also batched) under each partner's billing lock held
exclusively, as before: every lead with a unit in them, but the leads the run settled
itself while their months still have the units they were numbered from (settling those
again would change nothing).
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import date, datetime

from django.db import connection, transaction
from django.db.models import Exists, OuterRef, Q, QuerySet

from billing import budgets, credit, returns, tiers
from billing.locks import share_billing_locks
from billing.models import (
    Charge,
    EntryType,
    ExchangeRate,
    FeeSchedule,
    PendingFee,
    ReturnReview,
    ReviewStatus,
)
from billing.periods import month_of, month_start, next_month
from billing.pricing import EVENT_FEE_KIND
from billing.quotes import Schedules
from billing.rows import (
    ENTRY_COLUMNS,
    EVENT_FIELDS,
    LEAD_FIELDS,
    Entry,
    EventLike,
    EventRow,
    LeadRow,
)
from billing.settlement import LeadBook, Writes, settle
from marketplace.models import EventType, Lead, LeadEvent

BATCH = 2000  # leads per transaction: a few thousand entries per INSERT

PartitionKey = tuple[uuid.UUID, str, date]  # (partner, event type, UTC month)


class UnitNumbers:
    """Tier unit numbers (``billing.tiers.unit_number``'s rule) of whole months, read once
    and numbered in memory: a partner's live units of one type in one UTC month, ordered by
    (occurred_at, the partner's event id by code point), numbered from 1.

    Kept across the batches of a run; each batch re-counts a month it uses (one index-only
    count of the month's events, sandbox ones included) after taking the partner's billing
    lock, and numbers it again if an event arrived meanwhile. Events are never deleted or
    re-dated, so an unchanged count is an unchanged month."""

    def __init__(self) -> None:
        self._months: dict[PartitionKey, tuple[int, dict[uuid.UUID, int]]] = {}
        self._checked: set[PartitionKey] = set()

    def new_batch(self) -> None:
        self._checked = set()

    def number(self, event: EventLike) -> int:
        key = (event.partner_id, event.type, month_of(event.occurred_at))
        if key not in self._checked:
            cached = self._months.get(key)
            if cached is None or cached[0] != self._events(key).count():
                self._months[key] = self._read(key)
            self._checked.add(key)
        numbers = self._months[key][1]
        if event.pk not in numbers:  # stored since this batch read the month
            self._months[key] = self._read(key)
            numbers = self._months[key][1]
        return numbers[event.pk]

    def unchanged(self, *, partner_id: uuid.UUID, months: set[date]) -> bool:
        """Whether the partner's months numbered so far still have the events they were
        numbered from (counted again, under the caller's lock)."""
        return all(
            self._events(key).count() == count
            for key, (count, _) in self._months.items()
            if key[0] == partner_id and key[2] in months
        )

    @staticmethod
    def _events(key: PartitionKey) -> QuerySet[LeadEvent]:
        partner_id, type_, month = key
        return LeadEvent.objects.filter(
            partner_id=partner_id,
            type=type_,
            occurred_at__gte=month_start(month),
            occurred_at__lt=month_start(next_month(month)),
        )

    def _read(self, key: PartitionKey) -> tuple[int, dict[uuid.UUID, int]]:
        rows = list(
            self._events(key).values_list("id", "occurred_at", "external_id", "lead__is_sandbox")
        )
        live = sorted((r for r in rows if not r[3]), key=lambda r: (r[1], r[2]))
        return len(rows), {row[0]: n for n, row in enumerate(live, start=1)}


class BatchPricer:
    """``billing.quotes.Pricer`` for a batch: the partners' schedules and every exchange
    rate read once, picked in memory by the rules of ``Schedules.in_force`` and
    ``billing.fx.rate_in_force`` (the pair's latest ``effective_from`` not after the time)."""

    def __init__(self, partner_ids: Sequence[uuid.UUID], units: UnitNumbers) -> None:
        grouped: dict[uuid.UUID, list[FeeSchedule]] = defaultdict(list)
        for schedule in FeeSchedule.objects.filter(partner_id__in=partner_ids).prefetch_related(
            "tiers"
        ):
            grouped[schedule.partner_id].append(schedule)
        self._schedules = {pk: Schedules(grouped[pk]) for pk in partner_ids}
        self._rates: dict[tuple[str, str], list[ExchangeRate]] = defaultdict(list)
        for rate in ExchangeRate.objects.order_by("-effective_from"):
            self._rates[(rate.from_currency, rate.to_currency)].append(rate)
        self._units = units

    def schedules(self, partner_id: uuid.UUID) -> Schedules:
        return self._schedules[partner_id]

    def unit_number(self, event: EventLike) -> int:
        return self._units.number(event)

    def rate_in_force(
        self, *, from_currency: str, to_currency: str, at: datetime
    ) -> ExchangeRate | None:
        pair = self._rates.get((from_currency, to_currency), [])
        return next((rate for rate in pair if rate.effective_from <= at), None)


def settle_leads(
    lead_ids: Iterable[uuid.UUID], *, units: UnitNumbers | None = None, lock: bool = True
) -> list[Entry]:
    """Settle each of these leads as ``billing.charging.settle_lead`` would, reading and
    writing in bulk, in the caller's transaction. ``lock``: take the leads' row locks (the
    catch-up run); without it the caller holds the partners' billing rows exclusively
    (re-tiering), which no lead's settling passes."""
    units = units or UnitNumbers()
    units.new_batch()
    _without_jit()
    found = Lead.objects.filter(id__any_of=list(lead_ids), is_sandbox=False).order_by("pk")
    if lock:
        found = found.select_for_update(of=("self",))
    leads = {row[0]: LeadRow(*row) for row in found.values_list(*LEAD_FIELDS)}
    if not leads:
        return []
    partner_ids = sorted({lead.partner_id for lead in leads.values()})
    through = share_billing_locks(partner_ids=partner_ids)
    events: dict[uuid.UUID, list[EventLike]] = defaultdict(list)
    for row in LeadEvent.objects.filter(lead_id__any_of=list(leads)).values_list(*EVENT_FIELDS):
        event = EventRow(*row)
        events[event.lead_id].append(event)
    entries: dict[uuid.UUID, list[Entry]] = defaultdict(list)
    for row in Charge.objects.filter(lead_id__any_of=list(leads)).values_list(*ENTRY_COLUMNS):
        entry = Entry(*row)
        entries[entry.lead_id].append(entry)
    statuses = _review_statuses([e for evs in events.values() for e in evs])
    pricer = BatchPricer(partner_ids, units)
    waiting = PendingFee.objects.filter(partner_id__in=partner_ids, resolved_at__isnull=True)
    out = Writes(pending=set(waiting.values_list("event_id", "kind")))
    made: list[Entry] = []
    for lead_id, lead in leads.items():
        book = LeadBook(lead, events[lead_id], entries[lead_id], statuses, through[lead.partner_id])
        made += settle(book, pricer, out)
    out.flush()
    products: dict[uuid.UUID, set[uuid.UUID]] = defaultdict(set)
    for entry in made:
        products[entry.partner_id].add(entry.product_id)
    for partner_id in sorted(products):
        credit.evaluate_credit_limit(partner_id=partner_id)
        budgets.evaluate_budgets(partner_id=partner_id, product_ids=products[partner_id])
    return made


def _without_jit() -> None:
    """For the rest of the transaction: no JIT compilation of queries. The batch's queries
    read many rows by key, so PostgreSQL's cost estimates cross ``jit_above_cost`` and it
    spends seconds compiling what runs in milliseconds."""
    if connection.vendor == "postgresql" and connection.in_atomic_block:
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL jit = off")


def _review_statuses(events: list[EventLike]) -> dict[uuid.UUID, str]:
    """The review status of each return sent to review, after sending there the returns
    with an unknown reason code that are not yet (whatever path brought them here)."""
    returned = [e.pk for e in events if e.type == EventType.RETURNED]
    statuses = dict(
        ReturnReview.objects.filter(event_id__in=returned).values_list("event_id", "status")
    )
    unjudged = [
        e.pk
        for e in events
        if e.type == EventType.RETURNED
        and e.pk not in statuses
        and e.reason not in returns.KNOWN_REASONS
    ]
    for event in LeadEvent.objects.filter(pk__in=unjudged).select_related("lead"):
        review = returns.review_return(event=event)
        if review is not None:
            statuses[event.pk] = review.status
    return statuses


def _unbilled_lead_ids() -> list[uuid.UUID]:
    """Every live lead with something to book, by partner: a billable event with no open
    charge (never charged: a schedule or exchange rate added late, billing away; or
    credited by a return that was reversed since), a reversed event whose charge is still
    open, a fee waiting for a rate, or a return with an unknown reason code that was never
    judged."""
    standing_returns = LeadEvent.objects.filter(
        ~Exists(LeadEvent.objects.filter(reverses_id=OuterRef("pk"))),
        lead_id=OuterRef("lead_id"),
        type=EventType.RETURNED,
    )
    waiting = ReturnReview.objects.filter(event_id=OuterRef("pk")).exclude(
        status=ReviewStatus.APPROVED
    )
    # A charge no correction has taken back (the net of its chain is this charge).
    open_charge = Exists(
        Charge.objects.filter(
            ~Exists(Charge.objects.filter(corrects_id=OuterRef("pk"))),
            event_id=OuterRef("pk"),
            entry_type=EntryType.CHARGE,
        )
    )
    reversed_ = Exists(LeadEvent.objects.filter(reverses_id=OuterRef("pk")))
    # Everything on a lead all of whose standing returns credit it is credited (skipping
    # those keeps every run from settling every returned lead again).
    credited = Exists(standing_returns) & ~Exists(
        standing_returns.filter(Q(Exists(waiting)) | ~Q(reason__in=returns.KNOWN_REASONS))
    )
    unbilled = LeadEvent.objects.filter(
        # Due (standing, not credited) and not charged, or charged and no longer due.
        (~open_charge & ~reversed_ & ~credited) | (open_charge & reversed_),
        type__in=list(EVENT_FEE_KIND),
        lead__is_sandbox=False,
    )
    found = set(unbilled.values_list("partner_id", "lead_id").distinct())
    found |= set(
        PendingFee.objects.filter(resolved_at__isnull=True).values_list("partner_id", "lead_id")
    )
    found |= set(
        LeadEvent.objects.filter(
            ~Exists(ReturnReview.objects.filter(event_id=OuterRef("pk"))),
            type=EventType.RETURNED,
            lead__is_sandbox=False,
        )
        .exclude(reason__in=returns.KNOWN_REASONS)
        .values_list("partner_id", "lead_id")
    )
    # By partner, so a batch touches few partners and few months of tier numbers.
    return [lead_id for _, lead_id in sorted(found)]


def unbilled_lead_ids() -> list[uuid.UUID]:
    """:func:`_unbilled_lead_ids` in a transaction of its own, without JIT."""
    with transaction.atomic():
        _without_jit()
        return _unbilled_lead_ids()


def tiered_charge_months(entries: Iterable[Entry]) -> dict[uuid.UUID, set[date]]:
    """The months of the tiered units charged, by partner: those to re-tier."""
    touched: dict[uuid.UUID, set[date]] = defaultdict(set)
    for entry in entries:
        if entry.kind in tiers.TIERED_KINDS and entry.entry_type == EntryType.CHARGE:
            assert entry.event_at is not None
            touched[entry.partner_id].add(month_of(entry.event_at))
    return touched


def charge_in_batches(
    lead_ids: Sequence[uuid.UUID], *, size: int = 0, units: UnitNumbers | None = None
) -> list[Entry]:
    """Settle the leads ``size`` (default :data:`BATCH`) at a time, each batch in its own
    transaction."""
    size = size or BATCH
    units = units or UnitNumbers()
    made: list[Entry] = []
    for start in range(0, len(lead_ids), size):
        with transaction.atomic():
            made += settle_leads(lead_ids[start : start + size], units=units)
    return made
