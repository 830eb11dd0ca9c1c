"""Pricing: what one billable event costs under a fee schedule. Pure functions."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from billing.money import to_cents

# Which partner-reported event makes which fee.
EVENT_FEE_KIND = {"accepted": "cpl", "approved": "cpa", "funded": "cpf"}


@dataclass(frozen=True)
class FeeTerms:
    cpl: Decimal
    cpa: Decimal
    cpf_rate: Decimal
    cpf_min: Decimal
    cpf_max: Decimal | None


def price(kind: str, terms: FeeTerms, *, principal: Decimal | None = None) -> Decimal:
    """The fee for one event, rounded to cents. CPF is a share of the funded principal,
    clamped to the per-loan minimum and maximum after rounding."""
    if kind == "cpl":
        return to_cents(terms.cpl)
    if kind == "cpa":
        return to_cents(terms.cpa)
    if kind == "cpf":
        if principal is None:
            raise ValueError("a CPF fee needs the funded principal")
        fee = max(to_cents(principal * terms.cpf_rate), terms.cpf_min)
        if terms.cpf_max is not None:
            fee = min(fee, terms.cpf_max)
        return to_cents(fee)
    raise ValueError(f"unknown fee kind {kind!r}")
