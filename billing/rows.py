"""Plain rows for settling: what charging reads of leads and events, and ledger entries.

Settling decides from a few attributes of a lead and its events and appends ledger
entries. The live path hands it model instances (``Lead``, ``LeadEvent``); the catch-up
path, settling tens of thousands of leads, reads the same columns into the slotted rows
here (a Django model instance costs more to build than its row costs to insert). Ledger
entries are :class:`Entry` rows on both paths: one column per ``Charge`` column, written
by ``billing.settlement.insert_entries``.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, fields
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Protocol

from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import ForeignKey, Lookup, UUIDField
from django.db.models.sql.compiler import SQLCompiler

from billing.models import Charge


class LeadLike(Protocol):
    """What settling reads of a lead (``marketplace.models.Lead`` has it)."""

    @property
    def pk(self) -> Any: ...
    @property
    def partner_id(self) -> Any: ...
    @property
    def product_id(self) -> Any: ...
    @property
    def bid_amount(self) -> Decimal | None: ...
    @property
    def bid_currency(self) -> str: ...


class EventLike(Protocol):
    """What settling reads of an event (``marketplace.models.LeadEvent`` has it)."""

    @property
    def pk(self) -> Any: ...
    @property
    def id(self) -> uuid.UUID: ...
    @property
    def partner_id(self) -> Any: ...
    @property
    def external_id(self) -> str: ...
    @property
    def type(self) -> str: ...
    @property
    def occurred_at(self) -> datetime: ...
    @property
    def amount(self) -> Decimal | None: ...
    @property
    def principal(self) -> Decimal | None: ...
    @property
    def currency(self) -> str: ...
    @property
    def reason(self) -> str: ...
    @property
    def revenue_period(self) -> str: ...
    @property
    def reverses_id(self) -> Any: ...


@dataclass(slots=True, eq=False)
class LeadRow:
    id: uuid.UUID
    partner_id: uuid.UUID
    product_id: uuid.UUID
    bid_amount: Decimal | None
    bid_currency: str

    @property
    def pk(self) -> uuid.UUID:
        return self.id


@dataclass(slots=True, eq=False)
class EventRow:
    id: uuid.UUID
    lead_id: uuid.UUID
    partner_id: uuid.UUID
    external_id: str
    type: str
    occurred_at: datetime
    amount: Decimal | None
    principal: Decimal | None
    currency: str
    reason: str
    revenue_period: str
    reverses_id: uuid.UUID | None

    @property
    def pk(self) -> uuid.UUID:
        return self.id


LEAD_FIELDS = tuple(f.name for f in fields(LeadRow))
EVENT_FIELDS = tuple(f.name for f in fields(EventRow))


@dataclass(slots=True, eq=False)
class Entry:
    """One ledger entry (a ``Charge`` row), in the model's column order."""

    id: uuid.UUID
    partner_id: uuid.UUID
    lead_id: uuid.UUID
    product_id: uuid.UUID
    event_id: uuid.UUID
    schedule_id: int | None
    kind: str
    chain: str
    seq: int
    prev_seq: int | None
    entry_type: str
    amount: Decimal
    currency: str
    unit_number: int | None
    source_amount: Decimal | None
    source_currency: str
    fx_rate: Decimal | None
    exchange_rate_id: int | None
    occurred_at: datetime
    corrects_id: uuid.UUID | None
    reason: str
    period: date
    credit_note_id: int | None
    created_at: datetime | None
    # Not a column: the time of the entry's event (which month's tier units it prices).
    event_at: datetime | None = None

    def as_charge(self) -> Charge:
        """The stored entry as a model instance."""
        charge = Charge(**{name: getattr(self, name) for name in ENTRY_COLUMNS})
        charge._state.adding = False
        return charge


ENTRY_COLUMNS = tuple(f.attname for f in Charge._meta.concrete_fields)
# The row mirrors the model: a column added to Charge must be added here.
assert tuple(f.name for f in fields(Entry))[: len(ENTRY_COLUMNS)] == ENTRY_COLUMNS, ENTRY_COLUMNS


class AnyOf(Lookup):
    """``id__any_of=[...]``, ``lead_id__any_of=[...]``: ``= ANY(%s)`` with the ids as ONE
    array parameter on PostgreSQL (``__in`` binds a parameter per id: for a batch of
    thousands, preparing and splitting them cost more than the query); ``IN`` elsewhere."""

    lookup_name = "any_of"
    prepare_rhs = False  # a list of ids, not one value of the field

    def as_sql(self, compiler: SQLCompiler, connection: BaseDatabaseWrapper) -> tuple[str, Any]:
        lhs, lhs_params = self.process_lhs(compiler, connection)
        values = list(self.rhs)
        if connection.vendor == "postgresql":
            array = f"{self.lhs.output_field.db_type(connection)}[]"
            return f"{lhs} = ANY(%s::{array})", [*lhs_params, values]
        if not values:
            return "0 = 1", list(lhs_params)
        marks = ", ".join(["%s"] * len(values))
        prepped = [self.lhs.output_field.get_db_prep_value(v, connection) for v in values]
        return f"{lhs} IN ({marks})", [*lhs_params, *prepped]


UUIDField.register_lookup(AnyOf)
ForeignKey.register_lookup(AnyOf)
