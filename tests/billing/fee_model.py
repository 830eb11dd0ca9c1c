"""An independent reference model of billing, written from the README's rules R0-R10 alone.

Plain dataclasses, lists and ``Decimal``; no Django and nothing from ``billing/``, so a test
that compares the product to this model checks the code against the *stated* rule, not
against the code's own idea of it. Every function names the rule it follows.

The model is incremental, like the product: facts arrive one at a time (an event the
marketplace accepted, a review decision, a schedule or exchange rate entered, an invoice
run), and after each one the ledger gets the entries R4 prescribes, each placed in the
billing month R8 gives. Between arrivals the wanted state of every chain is computed from
scratch from all facts known so far (``fee_state``), so it never depends on arrival order;
only the sequence of ledger entries (and so which month or document bills them) does.

Inputs are identified by plain strings: a partner "P0", a product "P0-a", a lead "L3";
event ids are the partner's own (unique per partner).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

CENT = Decimal("0.01")
ZERO = Decimal("0.00")

# R3: the reason codes the README lists; any other code sends a return to review.
KNOWN_REASONS = frozenset(
    {
        "duplicate",
        "invalid_contact",
        "fraud_suspected",
        "not_interested",
        "out_of_criteria",
        "other",
    }
)
# R1: billable event type -> fee kind.
FEE_KIND = {"accepted": "cpl", "approved": "cpa", "funded": "cpf", "revenue": "revshare"}
NUMBERED = ("accepted", "approved", "funded")  # R6: revenue events are not numbered


class ModelError(Exception):
    """A situation the rules do not decide (the generator must not produce it)."""


def to_cents(value: Decimal) -> Decimal:
    """R0: one rounding rule, ROUND_HALF_UP to 0.01."""
    return value.quantize(CENT, rounding=ROUND_HALF_UP)


def month_of(at: datetime) -> date:
    """The UTC calendar month of a time, as its first day."""
    utc = at.astimezone(UTC)
    return date(utc.year, utc.month, 1)


def next_month(month: date) -> date:
    return date(month.year + month.month // 12, month.month % 12 + 1, 1)


# ---------------------------------------------------------------------------------------
# Inputs


@dataclass(frozen=True)
class Tier:
    """A marginal tier: overrides the named fees for units numbered above ``from_count``."""

    from_count: int
    cpl: Decimal | None = None
    cpa: Decimal | None = None
    cpf_rate: Decimal | None = None


@dataclass(frozen=True)
class Schedule:
    partner: str
    product: str | None  # None: partner-wide
    currency: str
    effective_from: datetime
    effective_to: datetime | None = None  # exclusive; None: open-ended
    cpl: Decimal = ZERO
    cpa: Decimal = ZERO
    cpf_rate: Decimal = Decimal("0")
    cpf_min: Decimal = ZERO
    cpf_max: Decimal | None = None
    revshare_rate: Decimal = Decimal("0")
    tiers: tuple[Tier, ...] = ()

    def covers(self, at: datetime) -> bool:
        return self.effective_from <= at and (self.effective_to is None or at < self.effective_to)


@dataclass(frozen=True)
class Rate:
    """One unit of ``from_currency`` is ``rate`` units of ``to_currency``, from a time on."""

    from_currency: str
    to_currency: str
    rate: Decimal
    effective_from: datetime


@dataclass(frozen=True)
class Lead:
    id: str
    partner: str
    product: str
    bid: Decimal | None = None  # the winning auction bid; None: not an auction lead
    bid_currency: str = "CNY"
    sandbox: bool = False


@dataclass(frozen=True)
class Event:
    """An event the marketplace accepted. ``amount``: approved amount or revenue;
    ``principal``: funded principal; both in ``currency``."""

    event_id: str
    lead: str
    type: str
    occurred_at: datetime
    amount: Decimal | None = None
    principal: Decimal | None = None
    currency: str = "CNY"
    reason: str = ""
    reverses: str = ""  # a reversal: the event_id it takes back
    period: str = ""  # revenue: "YYYY-MM" (default: the month of occurred_at)

    @property
    def revenue_period(self) -> str:
        return self.period or f"{self.occurred_at.astimezone(UTC):%Y-%m}"

    @property
    def order(self) -> tuple[datetime, str]:
        return (self.occurred_at, self.event_id)


ChainKey = tuple[str, str, str]  # (lead, kind, "" or the revenue period "YYYY-MM")


@dataclass(frozen=True)
class Fee:
    """What R2-R7 say about one chain whose billable event stands.

    status: ``due`` (price and currency set), ``credited`` (the lead has a crediting
    return), ``needs_rate`` (a conversion has no rate in force; ``needs`` names the pair),
    ``no_schedule`` (no schedule in force and not an auction CPL)."""

    chain: ChainKey
    partner: str
    product: str
    event: Event
    unit: int | None
    status: str
    price: Decimal | None = None
    currency: str | None = None
    needs: tuple[str, str] | None = None
    fx_rate: Decimal | None = None


# ---------------------------------------------------------------------------------------
# The wanted state (order-independent)


@dataclass
class World:
    leads: dict[str, Lead]
    schedules: list[Schedule] = field(default_factory=list)
    rates: list[Rate] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)  # accepted by the marketplace
    # (partner, event_id of a return sent to review) -> True approved / False rejected.
    decisions: dict[tuple[str, str], bool] = field(default_factory=dict)

    def partner_of(self, event: Event) -> str:
        return self.leads[event.lead].partner

    def key(self, event: Event) -> tuple[str, str]:
        return (self.partner_of(event), event.event_id)


def standing(world: World) -> list[Event]:
    """R3: reported, not a reversal, and not reversed."""
    reversed_keys = {
        (world.partner_of(e), e.reverses) for e in world.events if e.type == "reversal"
    }
    return [e for e in world.events if e.type != "reversal" and world.key(e) not in reversed_keys]


def unit_numbers(world: World) -> dict[tuple[str, str], int]:
    """R6: per partner, type and UTC month, 1 + the partner's live events of the type in
    the month ordered before it by (occurred_at, event_id); reversed events and events on
    returned or auction leads count; sandbox leads do not (they are not live)."""
    groups: dict[tuple[str, str, date], list[Event]] = defaultdict(list)
    for event in world.events:
        lead = world.leads[event.lead]
        if event.type in NUMBERED and not lead.sandbox:
            groups[(lead.partner, event.type, month_of(event.occurred_at))].append(event)
    numbers = {}
    for (partner, _, _), events in groups.items():
        for n, event in enumerate(sorted(events, key=lambda e: e.order), start=1):
            numbers[(partner, event.event_id)] = n
    return numbers


def sent_to_review(event: Event) -> bool:
    """R3: a return whose reason code is unknown waits for review (return-rate caps,
    the other road to review, are outside the model: scenarios stay below them)."""
    return event.reason not in KNOWN_REASONS


def crediting_return(world: World, lead_id: str, standing_events: list[Event]) -> Event | None:
    """R3: the lead's first standing return (by occurred_at, event_id) if creditable; a
    first return that is pending or rejected credits nothing, and no later one instead."""
    returns = sorted(
        (e for e in standing_events if e.lead == lead_id and e.type == "returned"),
        key=lambda e: e.order,
    )
    if not returns:
        return None
    first = returns[0]
    if not sent_to_review(first):
        return first
    return first if world.decisions.get(world.key(first)) is True else None


def schedule_in_force(world: World, lead: Lead, at: datetime) -> Schedule | None:
    """R2: the product's own schedule covering ``at`` (latest effective_from), else the
    partner-wide one."""
    for product in (lead.product, None):
        found = [
            s
            for s in world.schedules
            if s.partner == lead.partner and s.product == product and s.covers(at)
        ]
        if found:
            return max(found, key=lambda s: s.effective_from)
    return None


def rate_in_force(world: World, source: str, target: str, at: datetime) -> Rate | None:
    """R7: the pair's latest effective_from <= at; only the entered direction."""
    found = [
        r
        for r in world.rates
        if r.from_currency == source and r.to_currency == target and r.effective_from <= at
    ]
    return max(found, key=lambda r: r.effective_from) if found else None


def tier_value(schedule: Schedule, name: str, unit: int) -> Decimal:
    """R5: start from the schedule's value; every tier with from_count < unit, lowest
    first, overrides it when it names one."""
    value: Decimal = getattr(schedule, name)
    for tier in sorted(schedule.tiers, key=lambda t: t.from_count):
        override = getattr(tier, name)
        if tier.from_count < unit and override is not None:
            value = override
    return value


def _price(
    world: World, lead: Lead, event: Event, kind: str, unit: int | None, chain: ChainKey
) -> Fee:
    def fee(status: str, **values: Any) -> Fee:
        return Fee(chain, lead.partner, lead.product, event, unit, status, **values)

    at = event.occurred_at
    schedule = schedule_in_force(world, lead, at)
    if schedule is None:
        # R2: no schedule: an auction lead's CPL is still its bid, in the bid's currency.
        if kind == "cpl" and lead.bid is not None:
            return fee("due", price=lead.bid, currency=lead.bid_currency)
        return fee("no_schedule")

    def convert(amount: Decimal, currency: str) -> tuple[Decimal | None, Decimal | None]:
        # R7: converted = to_cents(amount * rate in force at occurred_at), then priced.
        if currency == schedule.currency:
            return amount, None
        rate = rate_in_force(world, currency, schedule.currency, at)
        if rate is None:
            return None, None
        return to_cents(amount * rate.rate), rate.rate

    if kind == "cpl" and lead.bid is not None:
        received: tuple[Decimal, str] | None = (lead.bid, lead.bid_currency)
    elif kind == "cpf":
        assert event.principal is not None
        received = (event.principal, event.currency)
    elif kind == "revshare":
        assert event.amount is not None
        received = (event.amount, event.currency)
    else:
        received = None  # R7: CPL and CPA of the schedule are in its currency already
    converted: Decimal | None = None
    fx: Decimal | None = None
    if received is not None:
        converted, fx = convert(*received)
        if converted is None:
            return fee(
                "needs_rate", currency=schedule.currency, needs=(received[1], schedule.currency)
            )
    assert unit is not None or kind == "revshare"
    if kind == "cpl":
        # R5: an auction lead pays its bid (not tiered), any other lead tier cpl.
        price = converted if lead.bid is not None else tier_value(schedule, "cpl", unit or 0)
    elif kind == "cpa":
        price = tier_value(schedule, "cpa", unit or 0)
    elif kind == "cpf":
        assert converted is not None
        price = max(
            to_cents(converted * tier_value(schedule, "cpf_rate", unit or 0)), schedule.cpf_min
        )
        if schedule.cpf_max is not None:
            price = min(price, schedule.cpf_max)
    else:
        assert converted is not None
        price = to_cents(converted * schedule.revshare_rate)  # never tiered
    assert price is not None
    return fee("due", price=to_cents(price), currency=schedule.currency, fx_rate=fx)


def fee_state(world: World) -> dict[ChainKey, Fee]:
    """Every chain whose billable event stands, with what is due on it (R1-R7). Chains
    missing from the result have no standing event: their net must be 0."""
    events = standing(world)
    numbers = unit_numbers(world)
    credited = {lead_id: crediting_return(world, lead_id, events) for lead_id in world.leads}
    state: dict[ChainKey, Fee] = {}
    for event in events:
        kind = FEE_KIND.get(event.type)
        lead = world.leads[event.lead]
        if kind is None or lead.sandbox:  # R0: sandbox leads are never billed
            continue
        chain: ChainKey = (lead.id, kind, event.revenue_period if kind == "revshare" else "")
        if chain in state:
            raise ModelError(f"two standing events on chain {chain}")
        unit = numbers.get((lead.partner, event.event_id))
        if credited[lead.id] is not None:
            state[chain] = Fee(
                chain=chain,
                partner=lead.partner,
                product=lead.product,
                event=event,
                unit=unit,
                status="credited",
            )
        else:
            state[chain] = _price(world, lead, event, kind, unit, chain)
    return state


# ---------------------------------------------------------------------------------------
# The ledger and its documents (order-dependent: entries are appended as facts arrive)


@dataclass
class Entry:
    chain: ChainKey
    partner: str
    product: str
    seq: int
    type: str  # charge, reversal, credit, reprice
    amount: Decimal
    currency: str
    at: datetime  # the time that places it in a month (R8)
    month: date  # its billing month (R8)
    event_id: str  # charges: the billable event; corrections: the charge's event
    invoice: tuple[str, str, date] | None = None
    credit_note: int | None = None


@dataclass
class Invoice:
    partner: str
    currency: str
    period: date
    subtotal: Decimal
    tax: Decimal
    total: Decimal


@dataclass
class CreditNote:
    partner: str
    currency: str
    invoice_period: date  # the period of the invoice it corrects
    subtotal: Decimal  # credited: positive
    tax: Decimal
    total: Decimal


class Model:
    """The world plus the ledger the rules build from it, one arrival at a time."""

    def __init__(self, *, leads: list[Lead], vat_rate: Decimal) -> None:
        self.world = World(leads={lead.id: lead for lead in leads})
        self.vat_rate = vat_rate
        self.entries: list[Entry] = []
        self.invoiced_through: dict[str, date] = {}
        self.invoices: dict[tuple[str, str, date], Invoice] = {}
        self.credit_notes: list[CreditNote] = []
        self.payments: dict[tuple[str, str], Decimal] = defaultdict(Decimal)

    # -- facts -----------------------------------------------------------------------

    def receive(self, event: Event, *, billing: bool = True) -> None:
        """An event the marketplace accepted; ``billing=False``: stored while billing
        was not listening (the catch-up charger books it later)."""
        self.world.events.append(event)
        if billing:
            self.sync(cause=event)

    def decide(self, partner: str, event_id: str, *, approve: bool) -> None:
        self.world.decisions[(partner, event_id)] = approve
        cause = next(e for e in self.world.events if self.world.key(e) == (partner, event_id))
        self.sync(cause=cause)

    def add_schedule(self, schedule: Schedule) -> None:
        self.world.schedules.append(schedule)

    def add_rate(self, rate: Rate) -> None:
        self.world.rates.append(rate)

    def catch_up(self) -> None:
        """The catch-up charger: book whatever the rules now say, with no new event."""
        self.sync(cause=None)

    def pay(self, partner: str, currency: str, amount: Decimal) -> None:
        self.payments[(partner, currency)] += amount

    # -- R4 and R8 ---------------------------------------------------------------------

    def chain_entries(self, chain: ChainKey) -> list[Entry]:
        return [e for e in self.entries if e.chain == chain]

    def _billing_month(self, partner: str, at: datetime) -> date:
        """R8: the month of ``at``, or the partner's first month not invoiced yet."""
        month = month_of(at)
        through = self.invoiced_through.get(partner)
        if through is not None and month <= through:
            return next_month(through)
        return month

    def _append(
        self, fee_or_open: Fee | Entry, type_: str, amount: Decimal, currency: str, at: datetime
    ) -> None:
        chain = fee_or_open.chain
        seq = len(self.chain_entries(chain)) + 1
        event_id = (
            fee_or_open.event.event_id if isinstance(fee_or_open, Fee) else fee_or_open.event_id
        )
        self.entries.append(
            Entry(
                chain=chain,
                partner=fee_or_open.partner,
                product=fee_or_open.product,
                seq=seq,
                type=type_,
                amount=amount,
                currency=currency,
                at=at,
                month=self._billing_month(fee_or_open.partner, at),
                event_id=event_id,
            )
        )

    def sync(self, *, cause: Event | None) -> None:
        """R4: append entries so that each chain's net is one unit at the R5-R7 price
        exactly when its fee is due, else 0."""
        state = fee_state(self.world)
        events = standing(self.world)
        standing_keys = {self.world.key(e) for e in events}
        chains = {e.chain for e in self.entries} | set(state)
        for chain in sorted(chains):
            fee = state.get(chain)
            history = self.chain_entries(chain)
            open_charge = history[-1] if history and history[-1].type == "charge" else None
            wanted = fee if fee is not None and fee.status == "due" else None
            if open_charge is not None and wanted is not None:
                assert wanted.price is not None and wanted.currency is not None
                if (open_charge.amount, open_charge.currency) == (wanted.price, wanted.currency):
                    continue
                # R4 reprice, then at once a new charge; R8: both at the causing event's time.
                if cause is None:
                    raise ModelError(f"chain {chain} changes price without an event")
                self._append(
                    open_charge,
                    "reprice",
                    -open_charge.amount,
                    open_charge.currency,
                    cause.occurred_at,
                )
                self._append(wanted, "charge", wanted.price, wanted.currency, cause.occurred_at)
            elif open_charge is not None:
                lead = self.world.leads[chain[0]]
                if (lead.partner, open_charge.event_id) not in standing_keys:
                    # R4 reversal, at the reversing event's time.
                    reversal = next(
                        e
                        for e in self.world.events
                        if e.type == "reversal"
                        and e.reverses == open_charge.event_id
                        and self.world.partner_of(e) == lead.partner
                    )
                    self._append(
                        open_charge,
                        "reversal",
                        -open_charge.amount,
                        open_charge.currency,
                        reversal.occurred_at,
                    )
                elif fee is not None and fee.status == "credited":
                    # R4 credit, at the crediting return's time.
                    credit = crediting_return(self.world, lead.id, events)
                    assert credit is not None
                    self._append(
                        open_charge,
                        "credit",
                        -open_charge.amount,
                        open_charge.currency,
                        credit.occurred_at,
                    )
                else:
                    raise ModelError(f"chain {chain} stops being due for no stated reason ({fee})")
            elif wanted is not None:
                assert wanted.price is not None and wanted.currency is not None
                # R4: a charge at its event's time. R8 leaves the time of a re-booking (the
                # credit went away) open; the README dates it when the return was reversed,
                # and never before the fee's own event: the later of the two.
                at = wanted.event.occurred_at
                if history and history[-1].type == "credit" and cause is not None:
                    at = max(at, cause.occurred_at)
                self._append(wanted, "charge", wanted.price, wanted.currency, at)

    # -- R8 invoices and credit notes ----------------------------------------------------

    def invoice(self, period: date) -> None:
        """One invoice run for ``period`` (issued at once): every partner with entries in
        or before it gets, per currency, an invoice of its entries not billed yet; the
        corrections of charges on issued invoices go on credit notes against those."""
        partners = sorted({e.partner for e in self.entries if e.month <= period})
        for partner in partners:
            open_entries = [
                e
                for e in self.entries
                if e.partner == partner
                and e.month <= period
                and e.invoice is None
                and e.credit_note is None
            ]
            by_invoice: dict[tuple[str, str, date], list[Entry]] = defaultdict(list)
            billed: dict[str, list[Entry]] = defaultdict(list)
            for entry in open_entries:
                corrected = self._corrected(entry)
                if corrected is not None and corrected.invoice is not None:
                    by_invoice[corrected.invoice].append(entry)
                else:
                    billed[entry.currency].append(entry)
            for key, entries in sorted(by_invoice.items()):
                subtotal = -sum((e.amount for e in entries), ZERO)
                tax = to_cents(subtotal * self.vat_rate)
                self.credit_notes.append(
                    CreditNote(partner, key[1], key[2], subtotal, tax, subtotal + tax)
                )
                for e in entries:
                    e.credit_note = len(self.credit_notes) - 1
            for currency, entries in sorted(billed.items()):
                key = (partner, currency, period)
                if key in self.invoices:
                    raise ModelError(f"a second invoice for {key}")
                subtotal = sum((e.amount for e in entries), ZERO)
                tax = to_cents(subtotal * self.vat_rate)
                self.invoices[key] = Invoice(
                    partner, currency, period, subtotal, tax, subtotal + tax
                )
                for e in entries:
                    e.invoice = key
            self.invoiced_through[partner] = max(period, self.invoiced_through.get(partner, period))

    def _corrected(self, entry: Entry) -> Entry | None:
        if entry.type == "charge":
            return None
        return self.chain_entries(entry.chain)[entry.seq - 2]

    # -- results -------------------------------------------------------------------------

    def fees(self) -> dict[ChainKey, Fee]:
        return fee_state(self.world)

    def chain_nets(self) -> dict[tuple[str, str, str, str], Decimal]:
        """Net per (lead, kind, chain, currency), zeros left out."""
        nets: dict[tuple[str, str, str, str], Decimal] = defaultdict(Decimal)
        for e in self.entries:
            nets[(*e.chain, e.currency)] += e.amount
        return {k: v for k, v in nets.items() if v != 0}

    def month_totals(self) -> dict[tuple[str, str, date], Decimal]:
        """Net of the entries per partner, currency and billing month (R8), zeros left out."""
        totals: dict[tuple[str, str, date], Decimal] = defaultdict(Decimal)
        for e in self.entries:
            totals[(e.partner, e.currency, e.month)] += e.amount
        return {k: v for k, v in totals.items() if v != 0}

    def balance(self, partner: str, currency: str) -> Decimal:
        """R9: issued invoice totals - credit note totals - payments."""
        invoiced = sum(
            (
                i.total
                for i in self.invoices.values()
                if (i.partner, i.currency) == (partner, currency)
            ),
            ZERO,
        )
        credited = sum(
            (c.total for c in self.credit_notes if (c.partner, c.currency) == (partner, currency)),
            ZERO,
        )
        return invoiced - credited - self.payments[(partner, currency)]

    def check_consistent(self) -> None:
        """The model against itself: each chain nets to its due price or to 0 (R4)."""
        state = self.fees()
        nets = self.chain_nets()
        for due in state.values():
            if due.status == "due":
                assert due.price is not None and due.currency is not None
                if due.price != 0:
                    assert nets.get((*due.chain, due.currency)) == due.price, due
        for (lead, kind, chain, currency), net in nets.items():
            fee = state.get((lead, kind, chain))
            assert fee is not None and fee.status == "due" and fee.currency == currency, (
                lead,
                kind,
                chain,
            )
            assert net == fee.price
