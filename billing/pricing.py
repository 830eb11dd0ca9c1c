"""Pricing: what one billable event costs under a fee schedule. Pure functions over plain
data, no database: charging gathers the inputs (terms, tiers, the unit's number in the
month, the auction bid) and stores the result.

Volume tiers are **marginal**: a tier prices only the units of a fee kind beyond its
threshold in the month; units below keep their price. The n-th unit's price depends only
on n, so a month's total for n units is the same whatever order the events arrive in; a
return or reversal credits exactly what its unit was charged.

Revenue share is a share of the revenue a partner reports on a funded loan (a ``revenue``
event per period: interest and fees actually collected), one fee per event, rounded to
cents. Volume tiers do not apply to it: the share of a period's revenue depends only on
that revenue and the schedule's rate.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from decimal import Decimal

from billing.money import to_cents

# Which partner-reported event makes which fee.
EVENT_FEE_KIND = {"accepted": "cpl", "approved": "cpa", "funded": "cpf", "revenue": "revshare"}


@dataclass(frozen=True)
class Tier:
    from_count: int  # prices units beyond this many in the month
    cpl: Decimal | None = None
    cpa: Decimal | None = None
    cpf_rate: Decimal | None = None


@dataclass(frozen=True)
class FeeTerms:
    """What a fee schedule charges: entered with ``billing.fees.create_fee_schedule``, read
    back from a stored schedule by ``billing.quotes.terms_of``. Zero fees by default."""

    cpl: Decimal = Decimal(0)  # per accepted lead
    cpa: Decimal = Decimal(0)  # per approved loan
    cpf_rate: Decimal = Decimal(0)  # fraction of funded principal (0.0300 = 3%)
    cpf_min: Decimal = Decimal(0)  # CPF per loan at least ...
    cpf_max: Decimal | None = None  # ... and at most (None: no maximum)
    tiers: tuple[Tier, ...] = ()
    # Fraction of reported revenue (0.1000 = 10%); never tiered.
    revshare_rate: Decimal = Decimal(0)


def terms_for_unit(terms: FeeTerms, unit: int) -> FeeTerms:
    """The terms that price the ``unit``-th unit (1-based) of the month: each tier whose
    threshold it is beyond overrides the fees it names, lowest threshold first."""
    if not terms.tiers:
        return terms  # untiered: every unit at the schedule's fees (no copy per unit)
    effective = replace(terms, tiers=())
    for tier in sorted(terms.tiers, key=lambda t: t.from_count):
        if unit <= tier.from_count:
            break
        effective = replace(
            effective,
            cpl=tier.cpl if tier.cpl is not None else effective.cpl,
            cpa=tier.cpa if tier.cpa is not None else effective.cpa,
            cpf_rate=tier.cpf_rate if tier.cpf_rate is not None else effective.cpf_rate,
        )
    return effective


def price(
    kind: str,
    terms: FeeTerms,
    *,
    principal: Decimal | None = None,
    unit: int = 1,
    bid: Decimal | None = None,
    revenue: Decimal | None = None,
) -> Decimal:
    """The fee for one event, rounded to cents. CPF is a share of the funded principal,
    clamped to the per-loan minimum and maximum after rounding. An auction lead's CPL is
    its winning bid (tiers do not discount a price the partner bid itself). Revenue share
    is ``revenue`` times the schedule's rate, rounded once to cents, whatever the unit."""
    if unit < 1:
        raise ValueError("units are counted from 1")
    if kind == "cpl" and bid is not None:
        if bid < 0:
            raise ValueError("a bid cannot be negative")
        return to_cents(bid)
    if kind == "revshare":
        if revenue is None:
            raise ValueError("a revenue share needs the reported revenue")
        if revenue < 0:
            raise ValueError("revenue cannot be negative")
        return to_cents(revenue * terms.revshare_rate)
    unit_terms = terms_for_unit(terms, unit)
    if kind == "cpl":
        return to_cents(unit_terms.cpl)
    if kind == "cpa":
        return to_cents(unit_terms.cpa)
    if kind == "cpf":
        if principal is None:
            raise ValueError("a CPF fee needs the funded principal")
        fee = max(to_cents(principal * unit_terms.cpf_rate), unit_terms.cpf_min)
        if unit_terms.cpf_max is not None:
            fee = min(fee, unit_terms.cpf_max)
        return to_cents(fee)
    raise ValueError(f"unknown fee kind {kind!r}")


def month_total(
    kind: str, terms: FeeTerms, units: int, *, principal: Decimal | None = None
) -> Decimal:
    """What ``units`` units of one kind cost in a month (for statements and tests)."""
    return sum(
        (price(kind, terms, principal=principal, unit=n) for n in range(1, units + 1)),
        Decimal("0.00"),
    )
