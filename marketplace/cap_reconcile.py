"""Reconciliation of the cap counters (``marketplace.caps``) with what they count.

The counters are taken by compare-and-set at the award and given back by
:func:`caps.release`; nothing there checks that they still agree with the leads. This
module recomputes, for one UTC month, every ``day``, ``month`` and ``reserved`` counter
(both modes) from its source of truth, the ``CapReservation`` rows of the leads that hold
their cap:

- ``day`` / ``month`` (product): the number of reservations of that product in that day
  or month, not released, whose lead holds its cap: the partner took it (not rejected,
  failed or blocked), or it is being sent again (``marketplace.resend`` took its caps
  again and queued its post: it stays ``delivery_failed`` until that post runs);
- ``reserved`` (product or partner): the sum of those reservations' ``product_amount`` or
  ``partner_amount`` for that budget month.

``charged`` counters are billing's (the charge ledger lives there): ``billing.budgets.
charged_drift`` checks them the same way, and ``manage.py reconcile`` reports both.

The rule on repair
------------------
Drift is *reported*, one line per counter (counter, expected, found). The only repair is
a lost release: a lead the partner never took (``caps.NOT_TAKEN``), with no post of it
queued, whose reservation was never given back makes its counters overcount by exactly
that reservation. With
``repair=True`` such a lead is released by :func:`caps.release` itself (once, by
compare-and-set on the reservation; the counters are updated under their row locks in the
documented lock order), which is what its post would have done. Nothing else is changed:
a counter is never raised (that would refuse leads on a guess), and an overcount without
a lost release behind it is never lowered (that would let awards past a cap that may be
right); both wait for a person.

The counters and the reservations are read in one snapshot (REPEATABLE READ on
PostgreSQL when called outside a transaction): an award writes its counters and its
reservation in one transaction, so a concurrent award never shows as drift.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal

from django.db import connection, transaction
from django.db.models import Count, Q, Sum

from marketplace import caps, tasks
from marketplace.models import CapCounter, CapKind, CapReservation, CapScope, OutboxMessage
from partners.months import next_month

CENT = Decimal("0.01")
ZERO = Decimal("0.00")
# (scope, owner, kind, period, is_sandbox): one counter.
CounterKey = tuple[str, uuid.UUID, str, date, bool]


@dataclass(frozen=True)
class CounterDrift:
    """One counter that disagrees with what it counts (ids only: no PII)."""

    scope: str
    owner_id: uuid.UUID
    kind: str
    period: date
    is_sandbox: bool
    expected: Decimal
    found: Decimal

    def __str__(self) -> str:
        mode = "sandbox" if self.is_sandbox else "live"
        return (
            f"cap counter {self.scope} {self.owner_id} {self.kind} {self.period} ({mode}): "
            f"expected {self.expected}, found {self.found}"
        )


@dataclass
class CapReconciliation:
    month: date
    checked: int = 0  # counters compared (existing or expected)
    drifts: list[CounterDrift] = field(default_factory=list)
    released: list[uuid.UUID] = field(default_factory=list)  # leads whose lost release ran

    @property
    def ok(self) -> bool:
        return not self.drifts


@contextmanager
def snapshot() -> Iterator[None]:
    """One consistent read of counters and their sources: a REPEATABLE READ, read-only
    transaction on PostgreSQL when none is open (inside a caller's transaction, that one)."""
    outermost = not connection.in_atomic_block
    with transaction.atomic():
        if connection.vendor == "postgresql" and outermost:
            # The first statement of the transaction: before any read takes its snapshot.
            with connection.cursor() as cursor:
                cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        yield


def cents(value: Decimal | int | float | None) -> Decimal:
    # SQLite sums decimals as floats: back to the cent.
    return Decimal(str(value or 0)).quantize(CENT)


def _not_taken(month: date) -> list[uuid.UUID]:
    """Leads of ``month`` the partner never took whose reservation is not given back."""
    end = next_month(month)
    return list(
        CapReservation.objects.filter(
            Q(day__gte=month, day__lt=end) | Q(month=month) | Q(budget_month=month),
            released_at__isnull=True,
            lead__status__in=caps.NOT_TAKEN,
        )
        .order_by("lead_id")
        .values_list("lead_id", flat=True)
    )


def _posts_queued() -> set[str]:
    """Leads whose post waits in the outbox (done when run), as marketplace.resend asks
    it: one read of the undone deliver_lead messages, not one query per lead."""
    return {
        str(args[0])
        for args in OutboxMessage.objects.filter(
            task=tasks.deliver_lead.name, done_at__isnull=True
        ).values_list("args", flat=True)
        if args
    }


def lost_releases(month: date) -> list[uuid.UUID]:
    """Leads of ``month`` the partner never took, with no post of them queued, whose
    reservation was not given back: their release was lost."""
    queued = _posts_queued()
    return [lead_id for lead_id in _not_taken(month) if str(lead_id) not in queued]


def expected_counts(month: date) -> dict[CounterKey, Decimal]:
    """What every day, month and reserved counter of ``month`` should hold (non-zero ones)."""
    end = next_month(month)
    queued = _posts_queued()
    resent = [lead_id for lead_id in _not_taken(month) if str(lead_id) in queued]
    held = CapReservation.objects.filter(
        ~Q(lead__status__in=caps.NOT_TAKEN) | Q(lead_id__in=resent), released_at__isnull=True
    )
    expected: dict[CounterKey, Decimal] = defaultdict(lambda: ZERO)
    for product_id, day, sandbox, n in (
        held.filter(day__gte=month, day__lt=end)
        .order_by()
        .values_list("product_id", "day", "is_sandbox")
        .annotate(n=Count("pk"))
    ):
        expected[(CapScope.PRODUCT.value, product_id, CapKind.DAY.value, day, sandbox)] += n
    for product_id, sandbox, n in (
        held.filter(month=month)
        .order_by()
        .values_list("product_id", "is_sandbox")
        .annotate(n=Count("pk"))
    ):
        expected[(CapScope.PRODUCT.value, product_id, CapKind.MONTH.value, month, sandbox)] += n
    budgeted = held.filter(budget_month=month).order_by()
    for scope, owner_field, amount_field in (
        (CapScope.PRODUCT.value, "product_id", "product_amount"),
        (CapScope.PARTNER.value, "partner_id", "partner_amount"),
    ):
        for owner, sandbox, amount in (
            budgeted.filter(**{f"{amount_field}__isnull": False})
            .values_list(owner_field, "is_sandbox")
            .annotate(amount=Sum(amount_field))
        ):
            key = (scope, owner, CapKind.RESERVED.value, month, sandbox)
            expected[key] += cents(amount)
    return {key: cents(value) for key, value in expected.items() if value}


def found_counts(month: date, kinds: tuple[str, ...]) -> dict[CounterKey, Decimal]:
    """The stored counters of ``month`` of these kinds (day counters: every day of it)."""
    end = next_month(month)
    rows = (
        CapCounter.objects.filter(kind__in=kinds, period__gte=month, period__lt=end)
        .order_by()
        .values_list("scope", "owner_id", "kind", "period", "is_sandbox", "used")
    )
    return {
        (scope, owner, kind, period, sandbox): cents(used)
        for scope, owner, kind, period, sandbox, used in rows
    }


def compare(
    expected: dict[CounterKey, Decimal], found: dict[CounterKey, Decimal]
) -> tuple[int, list[CounterDrift]]:
    """Every counter (stored or expected) whose value is not the expected one, in the lock
    order; a missing counter counts as 0."""
    keys = set(expected) | set(found)
    drifts = [
        CounterDrift(*key, expected=expected.get(key, ZERO), found=found.get(key, ZERO))
        for key in keys
        if expected.get(key, ZERO) != found.get(key, ZERO)
    ]
    drifts.sort(
        key=lambda d: (d.is_sandbox, caps.lock_order((d.scope, d.owner_id, d.kind, d.period)))
    )
    return len(keys), drifts


def reconcile_caps(*, month: date, repair: bool = False) -> CapReconciliation:
    """Compare the day, month and reserved counters of ``month`` with their reservations;
    with ``repair``, first complete the lost releases (the one repair, see the module
    docstring). Returns what still drifts and the leads released."""
    result = CapReconciliation(month=month)
    if repair:
        for lead_id in lost_releases(month):
            # Its own transaction, counters locked in the lock order; False if the lead's
            # own post released it meanwhile.
            if caps.release(lead_id=lead_id):
                result.released.append(lead_id)
    with snapshot():
        expected = expected_counts(month)
        found = found_counts(month, (CapKind.DAY, CapKind.MONTH, CapKind.RESERVED))
    result.checked, result.drifts = compare(expected, found)
    return result
