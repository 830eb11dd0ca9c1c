"""Settling one lead: the entries that bring each of its chains to what is due now.

Pure decisions over what the caller read (:class:`LeadBook`): the lead, its events, its
ledger entries, the review status of its returns and the partner's ``invoiced_through``
(read under the partner's billing lock). Prices come from ``billing.quotes.quote`` through
the caller's :class:`~billing.quotes.Pricer`. The entries and the fees left waiting for a
rate are collected in :class:`Writes` and written together by :meth:`Writes.flush`, so
the live path (one lead, ``billing.charging.settle_lead``) and the catch-up path (a batch
of leads, ``billing.catchup``) decide with the same code and differ only in how they read
and write. The rules are in ``billing.charging``'s docstring.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import cast

from django.db import connection
from django.db.models import Q
from django.utils import timezone

from billing import returns
from billing.locks import period_for
from billing.models import Charge, EntryType, PendingFee
from billing.pricing import EVENT_FEE_KIND
from billing.quotes import NeedsRate, Pricer, Quote, quote
from billing.rows import ENTRY_COLUMNS, Entry, EventLike, LeadLike
from marketplace.events import standing
from marketplace.models import EventType, LeadEvent

ChainKey = tuple[str, str]  # (kind, chain)
COPY_FROM = 100  # entries: fewer go in one INSERT (one round trip), more in one COPY
# Column names in ENTRY_COLUMNS order (rows.py checks that order against the model).
ENTRY_COLUMN_NAMES = tuple(str(f.column) for f in Charge._meta.concrete_fields)


@dataclass
class LeadBook:
    """Everything settling one lead reads, read by the caller under its locks."""

    lead: LeadLike
    events: list[EventLike]
    entries: list[Entry]
    # The ReturnReview status of each of the lead's returns sent to review.
    review_status: dict[uuid.UUID, str]
    # The partner's last invoiced month (``billing.locks.share_billing_lock``).
    invoiced_through: date | None


@dataclass
class Writes:
    """What settling decided to write, written at once by :meth:`flush`."""

    entries: list[Entry] = field(default_factory=list)
    waiting: list[PendingFee] = field(default_factory=list)
    # (event id, fee kind) of fees that were waiting for a rate and are now charged.
    resolved: list[tuple[uuid.UUID, str]] = field(default_factory=list)
    # The fees waiting for a rate, when the caller read them (a batch): only those are
    # resolved. None: any of ``resolved`` may be waiting.
    pending: set[tuple[uuid.UUID, str]] | None = None
    # Events stored in the caller's transaction (the live path's new event): no fee of
    # theirs can be waiting for a rate yet, so charging them resolves nothing.
    fresh: frozenset[uuid.UUID] = frozenset()

    def flush(self) -> None:
        """One INSERT for the entries (positions in a chain are unique and each refers to
        the one before it: a position taken by someone else is a bug in the locking, not a
        duplicate to ignore, so the IntegrityError ends the transaction), one for the
        fees now waiting (an open one for the same fee stays), one UPDATE for those
        charged."""
        if self.pending is not None:
            self.resolved = [fee for fee in self.resolved if fee in self.pending]
        self.resolved = [fee for fee in self.resolved if fee[0] not in self.fresh]
        if self.resolved:
            by_kind: dict[str, list[uuid.UUID]] = defaultdict(list)
            for event_id, kind in self.resolved:
                by_kind[kind].append(event_id)
            match = Q()
            for kind, event_ids in by_kind.items():
                match |= Q(kind=kind, event_id__in=event_ids)
            PendingFee.objects.filter(match, resolved_at__isnull=True).update(
                resolved_at=timezone.now()
            )
        if self.entries:
            insert_entries(self.entries)
        if self.waiting:
            PendingFee.objects.bulk_create(self.waiting, ignore_conflicts=True, batch_size=2000)
        self.entries, self.waiting, self.resolved = [], [], []


def insert_entries(entries: list[Entry]) -> None:
    """Insert ledger entries, in order (each may refer to an earlier one). PostgreSQL, many
    entries: one COPY (parsing and planning a 50,000-parameter INSERT costs more than the
    rows do); otherwise ``bulk_create``. Same constraints and triggers either way."""
    now = timezone.now()
    for entry in entries:
        entry.created_at = now  # what auto_now_add sets
    if connection.vendor != "postgresql" or len(entries) < COPY_FROM:
        Charge.objects.bulk_create([entry.as_charge() for entry in entries], batch_size=500)
        return
    columns = ", ".join(connection.ops.quote_name(name) for name in ENTRY_COLUMN_NAMES)
    table = connection.ops.quote_name(Charge._meta.db_table)
    with (
        connection.cursor() as cursor,
        cursor.cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy,
    ):
        for entry in entries:
            copy.write_row([getattr(entry, name) for name in ENTRY_COLUMNS])


class _Chain:
    """The entries of one chain, in order, as appended so far."""

    def __init__(
        self,
        lead: LeadLike,
        key: ChainKey,
        entries: list[Entry],
        invoiced_through: date | None,
        out: Writes,
    ) -> None:
        self.lead, (self.kind, self.chain) = lead, key
        self.entries = sorted(entries, key=lambda e: e.seq)
        # Read under the partner's billing lock, held until commit.
        self.invoiced_through = invoiced_through
        self.out = out

    @property
    def open_charge(self) -> Entry | None:
        last = self.entries[-1] if self.entries else None
        return last if last is not None and last.entry_type == EntryType.CHARGE else None

    @property
    def last(self) -> Entry | None:
        return self.entries[-1] if self.entries else None

    def append(self, entry: Entry) -> Entry:
        self.out.entries.append(entry)
        self.entries.append(entry)
        return entry

    def _position(self) -> tuple[int, int | None]:
        last = self.last
        return (last.seq + 1, last.seq) if last else (1, None)

    def correct(
        self, *, event: EventLike, entry_type: str, at: datetime, reason: str = ""
    ) -> Entry:
        charge = self.open_charge
        assert charge is not None
        seq, prev_seq = self._position()
        return self.append(
            Entry(
                id=uuid.uuid4(),
                partner_id=charge.partner_id,
                lead_id=charge.lead_id,
                product_id=charge.product_id,
                event_id=event.pk,
                schedule_id=charge.schedule_id,
                kind=charge.kind,
                chain=self.chain,
                seq=seq,
                prev_seq=prev_seq,
                entry_type=entry_type,
                amount=-charge.amount,
                currency=charge.currency,
                unit_number=None,
                source_amount=None,
                source_currency="",
                fx_rate=None,
                exchange_rate_id=None,
                occurred_at=at,
                corrects_id=charge.id,
                reason=reason,
                period=period_for(at=at, invoiced_through=self.invoiced_through),
                credit_note_id=None,
                created_at=None,
                event_at=event.occurred_at,
            )
        )

    def charge(self, *, event: EventLike, price_of: Quote, at: datetime) -> Entry:
        conversion = price_of.conversion
        seq, prev_seq = self._position()
        return self.append(
            Entry(
                id=uuid.uuid4(),
                partner_id=self.lead.partner_id,
                lead_id=self.lead.pk,
                product_id=self.lead.product_id,
                event_id=event.pk,
                schedule_id=price_of.schedule.pk if price_of.schedule is not None else None,
                kind=self.kind,
                chain=self.chain,
                seq=seq,
                prev_seq=prev_seq,
                entry_type=EntryType.CHARGE,
                amount=price_of.amount,
                currency=price_of.currency,
                unit_number=price_of.unit,
                source_amount=conversion.source_amount if conversion else None,
                source_currency=conversion.source_currency if conversion else "",
                fx_rate=conversion.rate.rate if conversion else None,
                exchange_rate_id=conversion.rate.pk if conversion else None,
                occurred_at=at,
                corrects_id=None,
                reason="",
                period=period_for(at=at, invoiced_through=self.invoiced_through),
                credit_note_id=None,
                created_at=None,
                event_at=event.occurred_at,
            )
        )


def _chain_key(event: EventLike) -> ChainKey:
    kind = EVENT_FEE_KIND[event.type]
    return kind, event.revenue_period if kind == "revshare" else ""


def standing_events(events: list[EventLike]) -> list[EventLike]:
    """``marketplace.events.standing`` (it reads only ``type``, ``id``, ``reverses_id``)."""
    return cast(list[EventLike], standing(cast(list[LeadEvent], events)))


def _due(events: list[EventLike]) -> dict[ChainKey, EventLike]:
    """The billable event each chain is due for (none when the lead is credited)."""
    due: dict[ChainKey, EventLike] = {}
    for event in sorted(standing_events(events), key=lambda e: (e.occurred_at, e.external_id)):
        if event.type in EVENT_FEE_KIND:
            due[_chain_key(event)] = event  # one standing per chain (marketplace's rule)
    return due


def _rebook_time(chain: _Chain, events: list[EventLike], event: EventLike) -> datetime:
    """When a charge is booked: its event's time, or, booked again after a return that
    credited it was reversed, the time of that reversal."""
    last = chain.last
    if last is not None and last.entry_type == EntryType.CREDIT:
        undone = [e for e in events if e.reverses_id == last.event_id]
        if undone:
            return max(event.occurred_at, undone[0].occurred_at)
    return event.occurred_at


def settle(book: LeadBook, pricer: Pricer, out: Writes) -> list[Entry]:
    """The entries that bring every chain of ``book.lead`` to what is due now (collected
    in ``out``; the caller flushes). Returns judged for review are the caller's to open
    before (``billing.returns.review_return``): their status is in ``book``."""
    events = book.events
    reversal_of = {
        e.reverses_id: e for e in events if e.type == EventType.REVERSAL and e.reverses_id
    }
    entries: dict[ChainKey, list[Entry]] = defaultdict(list)
    for entry in book.entries:
        entries[(entry.kind, entry.chain)].append(entry)
    credited_by = returns.crediting_return(
        cast(list[LeadEvent], events), statuses=book.review_status
    )
    due = {} if credited_by is not None else _due(events)
    made: list[Entry] = []
    for key in sorted(set(entries) | set(due)):
        chain = _Chain(book.lead, key, entries.get(key, []), book.invoiced_through, out)
        made += _settle_chain(chain, due.get(key), credited_by, reversal_of, events, pricer)
    return made


def _settle_chain(
    chain: _Chain,
    target: EventLike | None,
    credited_by: LeadEvent | None,
    reversal_of: dict[uuid.UUID, EventLike],
    events: list[EventLike],
    pricer: Pricer,
) -> list[Entry]:
    made: list[Entry] = []
    current = chain.open_charge
    if current is not None:
        reversal = reversal_of.get(current.event_id)
        undo = reversal is not None or (target is None and credited_by is not None)
        if undo:
            # A unit is corrected at its current price: renumbered by a unit reported
            # late, it is repriced first, so the correction takes back what is due for it.
            priced = next(e for e in events if e.id == current.event_id)
            made += _reprice(chain, priced, quote(priced, chain.lead, chain.kind, pricer))
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
    price_of = quote(target, chain.lead, chain.kind, pricer)
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
    chain.out.resolved.append((target.pk, chain.kind))
    return made


def _reprice(chain: _Chain, event: EventLike, price_of: Quote | NeedsRate | None) -> list[Entry]:
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


def _wait_for_rate(event: EventLike, chain: _Chain, missing: NeedsRate) -> None:
    chain.out.waiting.append(
        PendingFee(
            event_id=event.pk,
            kind=chain.kind,
            partner_id=chain.lead.partner_id,
            lead_id=chain.lead.pk,
            from_currency=missing.from_currency,
            to_currency=missing.to_currency,
            occurred_at=event.occurred_at,
        )
    )
