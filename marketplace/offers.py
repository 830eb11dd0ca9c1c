"""What the applicant is shown: their offers in the applicant's order, and who got their
data. Offers are ordered by the likelihood of approval (P(accepted and approved), from the
posterior means routing recorded for the referral, ``marketplace.decisions``), then by cost
(the caller's order, cheapest APR first), never by what a partner pays the platform
(CFPB Circular 2024-01: steering by compensation can be abusive)."""

from __future__ import annotations

from collections.abc import Sequence

from marketplace.models import Lead, RoutingDecision


def approval_likelihoods(decision: RoutingDecision | None) -> dict[str, float]:
    """Product id -> P(accepted and approved) by the recorded posterior means."""
    if decision is None:
        return {}
    found = {}
    for entry in decision.candidates:
        means = entry.get("means")
        if means:
            found[entry["product"]] = round(means["accept"] * means["approve"], 4)
    return found


def applicant_order(leads: Sequence[Lead], likelihoods: dict[str, float]) -> list[Lead]:
    """``leads`` (given cheapest first) with the likeliest approval first; equal
    likelihoods keep the cost order (sort is stable)."""
    return sorted(leads, key=lambda lead: -likelihoods.get(str(lead.product_id), 0.0))
