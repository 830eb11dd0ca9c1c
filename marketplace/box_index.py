"""Compiled credit boxes: which boxes accept an application, at a cost that grows with the
number of criteria and of matches, not with the number of boxes. Pure Python, no database.

In the spirit of "Indexing Boolean Expressions" (Whang et al., VLDB 2009). Every box gets a
position (its place in the sequence it was compiled from), and every criterion of
``marketplace.matching.fits`` becomes a lookup from the application's value to the set of
positions whose box accepts that value, held as a Python int used as a bitset:

- set-valued criteria (risk tier, region with its exclusions, employment type, purpose,
  channel): a dict from value to bitset, each already holding the boxes that accept any value
  (an empty set, where ``fits`` reads it so) and without the boxes that exclude the value; a
  value no box names gets the bitset of the boxes that accept anything (none for tiers);
- ranges (amount, term, age, income floor, and the cheapest APR against the cap): the distinct
  bounds of one side sorted, with bitsets accumulated over them, so "lower bound <= x" is one
  ``bisect_right`` into prefix bitsets and "upper bound >= x" one ``bisect_left`` into suffix
  bitsets. Bounds stay Decimals (or ints) and compare with the application's own values, so
  every bound is inclusive exactly as ``fits`` has it, cents included.

An application is answered by ANDing one bitset per criterion and decoding the set bits in
position order: the boxes come back in the order they were compiled in, as a scan over the
same sequence returns them.

Memory: a bitset costs (number of boxes)/8 bytes, one per distinct value or bound. A range side
with more than ``MAX_LEVELS`` distinct bounds is not compiled (that would cost a bitset per
box): its comparison runs on the few boxes the other criteria leave, so the answer stays exact.

The index is immutable. A changed catalogue either compiles a new one, or, for a few changed
boxes, makes a *revision* (:meth:`BoxIndex.revised`) that shares the compiled bitsets: the
changed and removed boxes' positions are masked out, and the new versions of changed boxes
(with any added ones) sit in a short list checked one by one, after the compiled matches,
until enough have gathered that compiling afresh is cheaper (``MAX_PENDING``), as a
log-structured index merges its small runs.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from decimal import Decimal
from operator import attrgetter
from typing import Any, Protocol, TypeVar, overload

# A range side with more distinct bounds than this is checked on the candidates instead.
MAX_LEVELS = 512
# A revision compiles afresh once its boxes outside the compiled bitsets pass this many,
# or a twentieth of the index, whichever is more.
MAX_PENDING = 64

Bound = Decimal | int


class IndexedBox(Protocol):
    """What the index reads of a credit box (``marketplace.matching.CreditBox``)."""

    @property
    def min_amount(self) -> Decimal: ...
    @property
    def max_amount(self) -> Decimal: ...
    @property
    def min_term(self) -> int: ...
    @property
    def max_term(self) -> int: ...
    @property
    def tiers(self) -> frozenset[str]: ...
    @property
    def regions(self) -> frozenset[str]: ...
    @property
    def excluded_regions(self) -> frozenset[str]: ...
    @property
    def min_age(self) -> int: ...
    @property
    def max_age(self) -> int: ...
    @property
    def min_income(self) -> Decimal: ...
    @property
    def employment_types(self) -> frozenset[str]: ...
    @property
    def purposes(self) -> frozenset[str]: ...
    @property
    def channels(self) -> frozenset[str]: ...
    @property
    def apr_min(self) -> Decimal: ...


class Query(Protocol):
    """What the index reads of an application (``marketplace.matching.Application``)."""

    @property
    def amount(self) -> Decimal: ...
    @property
    def term_months(self) -> int: ...
    @property
    def risk_tier(self) -> str: ...
    @property
    def region(self) -> str: ...
    @property
    def age(self) -> int: ...
    @property
    def income_floor(self) -> Decimal: ...
    @property
    def employment_type(self) -> str: ...
    @property
    def purpose(self) -> str: ...
    @property
    def channel(self) -> str: ...


B = TypeVar("B", bound=IndexedBox)
T = TypeVar("T")
# (The application as the caller's own type: the rule it checks is the caller's.)
Check = Callable[[B, Any, Decimal], bool]


def bitset(positions: Iterable[int], size: int) -> int:
    """The set of ``positions`` (each below ``size``) as an int whose binary digits, written
    out to ``size`` places, read in position order: position p is the bit of weight
    2 ** (size - 1 - p). Reading order lets ``decode`` scan ``bin()`` forwards, no copy."""
    if not size:
        return 0
    digits = bytearray(b"0") * size
    for position in positions:
        digits[position] = 0x31  # "1"
    return int(digits, 2)


def decode(bits: int, items: Sequence[T]) -> list[T]:
    """The items at the positions in ``bits`` (a ``bitset`` of ``len(items)`` places), in
    position order. ``bin`` writes the digits out in C behind a leading 1 that fixes their
    number, so digit 3 + p (after "0b1") is position p, and ``str.find`` skips the zeros in
    C: the Python steps are one per set bit, none per item."""
    digits = bin(bits | 1 << len(items))
    find = digits.find
    found: list[T] = []
    append = found.append
    position = find("1", 3)
    while position >= 0:
        append(items[position - 3])
        position = find("1", position + 1)
    return found


def positions_of(bits: int, size: int) -> list[int]:
    """The positions in ``bits`` (a ``bitset`` of ``size`` places), ascending."""
    return decode(bits, range(size))


class _Members:
    """Boxes accepting a value of a set-valued criterion."""

    __slots__ = ("_by_value", "_default")

    def __init__(
        self,
        accepted: Sequence[frozenset[str]],
        *,
        empty_means_any: bool,
        excluded: Sequence[frozenset[str]] | None = None,
    ) -> None:
        size = len(accepted)
        naming: defaultdict[str, list[int]] = defaultdict(list)
        for position, values in enumerate(accepted):
            for value in values:
                naming[value].append(position)
        anything = (
            bitset((p for p, values in enumerate(accepted) if not values), size)
            if empty_means_any
            else 0
        )
        excluding: defaultdict[str, list[int]] = defaultdict(list)
        for position, values in enumerate(excluded or ()):
            for value in values:
                excluding[value].append(position)
        self._by_value = {
            value: (bitset(naming.get(value, ()), size) | anything)
            & ~bitset(excluding.get(value, ()), size)
            for value in naming.keys() | excluding.keys()
        }
        self._default = anything

    def accepting(self, value: str) -> int:
        return self._by_value.get(value, self._default)


class _Side:
    """Boxes whose bound on one side of a range admits x: a lower bound admits x when
    bound <= x, an upper bound when bound >= x (inclusive, as ``fits`` compares)."""

    __slots__ = ("_bitsets", "_bounds", "_lower", "compiled", "everything", "read")

    def __init__(self, boxes: Sequence[IndexedBox], attribute: str, *, lower: bool) -> None:
        bounds: list[Bound] = [getattr(box, attribute) for box in boxes]
        size = len(bounds)
        self.read: Callable[[IndexedBox], Bound] = attrgetter(attribute)
        self._lower = lower
        self.everything = (1 << size) - 1
        by_bound: defaultdict[Bound, list[int]] = defaultdict(list)
        for position, bound in enumerate(bounds):
            by_bound[bound].append(position)  # equal Decimals (1.0, 1.00) share one level
        self.compiled = len(by_bound) <= MAX_LEVELS
        self._bounds: list[Bound] = sorted(by_bound)
        self._bitsets: list[int] = []
        if not self.compiled:
            return
        levels = [bitset(by_bound[bound], size) for bound in self._bounds]
        accumulated = 0
        if lower:
            # _bitsets[i]: boxes whose bound is among the i smallest; bisect_right(x) counts
            # the bounds <= x.
            self._bitsets.append(0)
            for level in levels:
                accumulated |= level
                self._bitsets.append(accumulated)
        else:
            # _bitsets[i]: boxes whose bound is at least the i-th; bisect_left(x) skips the
            # bounds < x.
            self._bitsets.append(0)
            for level in reversed(levels):
                accumulated |= level
                self._bitsets.append(accumulated)
            self._bitsets.reverse()

    def accepting(self, x: Bound) -> int:
        if not self.compiled:
            return self.everything  # decided per candidate by ``admits``
        if self._lower:
            return self._bitsets[bisect_right(self._bounds, x)]
        return self._bitsets[bisect_left(self._bounds, x)]

    def admits(self, box: IndexedBox, x: Bound) -> bool:
        bound = self.read(box)
        return bound <= x if self._lower else bound >= x


class BoxIndex(Sequence[B]):
    """Boxes compiled for matching; also the sequence of those boxes, in their given order."""

    def __init__(self, boxes: Iterable[B]) -> None:
        self._boxes: tuple[B, ...] = tuple(boxes)
        b = self._boxes
        self._tiers = _Members([x.tiers for x in b], empty_means_any=False)
        self._regions = _Members(
            [x.regions for x in b], empty_means_any=True, excluded=[x.excluded_regions for x in b]
        )
        self._employment = _Members([x.employment_types for x in b], empty_means_any=True)
        self._purposes = _Members([x.purposes for x in b], empty_means_any=True)
        self._channels = _Members([x.channels for x in b], empty_means_any=True)
        self._min_amount = _Side(b, "min_amount", lower=True)
        self._max_amount = _Side(b, "max_amount", lower=False)
        self._min_term = _Side(b, "min_term", lower=True)
        self._max_term = _Side(b, "max_term", lower=False)
        self._min_age = _Side(b, "min_age", lower=True)
        self._max_age = _Side(b, "max_age", lower=False)
        self._min_income = _Side(b, "min_income", lower=True)
        # The cap is the query here: a box is lawful when its cheapest APR is <= the cap.
        self._apr_min = _Side(b, "apr_min", lower=True)
        # Range sides too varied to compile, checked on the decoded boxes instead.
        self._residual = not all(
            side.compiled
            for side in (
                self._min_amount,
                self._max_amount,
                self._min_term,
                self._max_term,
                self._min_age,
                self._max_age,
                self._min_income,
                self._apr_min,
            )
        )
        # A revision's state (see ``revised``): compiled positions masked out, the boxes
        # checked one by one with ``_check``, and the sequence the index stands for.
        self._dead = 0
        self._pending: tuple[B, ...] = ()
        self._check: Check[B] | None = None
        self._sequence: tuple[B, ...] = self._boxes

    def revised(
        self, *, remove: Callable[[B], bool], add: Iterable[B], check: Check[B]
    ) -> BoxIndex[B]:
        """This index without the boxes ``remove`` selects, plus ``add``, in that order: the
        same answers as ``BoxIndex([*(b for b in self if not remove(b)), *add])``. Shares
        this index's compiled bitsets; ``check(box, app, apr_cap)`` (the rule the index
        compiles, ``marketplace.matching.fits``) answers for the boxes not compiled. One
        pass over the boxes; compiles afresh when too many are pending."""
        kept_pending = tuple(box for box in self._pending if not remove(box))
        added = tuple(add)
        dead = self._dead | bitset(
            (position for position, box in enumerate(self._boxes) if remove(box)),
            len(self._boxes),
        )
        pending = kept_pending + added
        if len(pending) > max(MAX_PENDING, len(self._boxes) // 20):
            return BoxIndex([*decode(self._alive(dead), self._boxes), *pending])
        revision: BoxIndex[B] = object.__new__(BoxIndex)
        revision.__dict__.update(self.__dict__)
        revision._dead = dead
        revision._pending = pending
        revision._check = check
        revision._sequence = (*decode(self._alive(dead), self._boxes), *pending)
        return revision

    def _alive(self, dead: int) -> int:
        return ((1 << len(self._boxes)) - 1) & ~dead

    def match(self, app: Query, *, apr_cap: Decimal) -> list[B]:
        """The boxes that accept ``app`` with their cheapest APR within ``apr_cap``: the same
        boxes, in the same order, as ``[b for b in self if fits(b, app, apr_cap=apr_cap)]``."""
        bits = (
            self._tiers.accepting(app.risk_tier)
            & self._regions.accepting(app.region)
            & self._employment.accepting(app.employment_type)
            & self._purposes.accepting(app.purpose)
            & self._channels.accepting(app.channel)
        )
        if bits:  # (the ranges' bisections are skipped for the applicants no box takes)
            amount, term, age = app.amount, app.term_months, app.age
            bits &= (
                self._min_amount.accepting(amount)
                & self._max_amount.accepting(amount)
                & self._min_term.accepting(term)
                & self._max_term.accepting(term)
                & self._min_age.accepting(age)
                & self._max_age.accepting(age)
                & self._min_income.accepting(app.income_floor)
                & self._apr_min.accepting(apr_cap)
            )
            if self._dead:
                bits &= ~self._dead
        found = decode(bits, self._boxes)
        if self._residual:
            residual = [(side, x) for side, x in self._ranges(app, apr_cap) if not side.compiled]
            found = [box for box in found if all(side.admits(box, x) for side, x in residual)]
        if self._pending and self._check is not None:
            check = self._check
            found.extend(box for box in self._pending if check(box, app, apr_cap))
        return found

    def _ranges(self, app: Query, apr_cap: Decimal) -> tuple[tuple[_Side, Bound], ...]:
        return (
            (self._min_amount, app.amount),
            (self._max_amount, app.amount),
            (self._min_term, app.term_months),
            (self._max_term, app.term_months),
            (self._min_age, app.age),
            (self._max_age, app.age),
            (self._min_income, app.income_floor),
            (self._apr_min, apr_cap),
        )

    @overload
    def __getitem__(self, index: int) -> B: ...
    @overload
    def __getitem__(self, index: slice) -> tuple[B, ...]: ...
    def __getitem__(self, index: int | slice) -> B | tuple[B, ...]:
        return self._sequence[index]

    def __len__(self) -> int:
        return len(self._sequence)

    def __iter__(self) -> Iterator[B]:
        return iter(self._sequence)
