"""Ranking: what each eligible candidate is worth to the platform, as plain functions over
plain data (no database; ``marketplace.learning`` gathers the inputs).

A candidate's conversion chances are Beta posteriors per stage of the funnel (learned per
product and segment, see ``marketplace.learning``):

- ``accept``: P(the partner accepts | the lead was delivered),
- ``approve``: P(approved | accepted), ``fund``: P(funded | approved),
- ``returned``: P(returned | accepted), the return rate.

Its expected value, in the platform currency, is the sum over billable stages of
P(stage reached) x the fee for that stage, from the product's fee card
(``marketplace.fee_cards``, written by billing)::

    EV = pa * CPL + pa * pp * CPA + pa * pp * pf * clamp(cpf_rate * principal, min, max)

and its score subtracts a penalty proportional to the return rate ``r``::

    score = EV - return_penalty * r * pa * CPL

(a return inside the window credits the lead's CPL: with ``return_penalty`` 1 the score is
the expected revenue net of credits; above 1 the strategy shuns returning partners more
than the money says). Exploring strategies use one Thompson draw from each Beta in place
of its mean; exploiting ones use the means. A product without a fee card is worth 0 but
keeps its place in the order by its (sampled) acceptance chance, so it is still explored
where places are left.

Scores are estimates for ordering candidates, not amounts anyone is charged: they are
floats, and only the fee card's fees (Decimal) go into them.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

# Beta parameters are kept above this so a prior of rate 0 or 1 still has a density.
MIN_PSEUDO_COUNT = 0.01


@dataclass(frozen=True, slots=True)
class Beta:
    """A Beta(alpha, beta) posterior of one conversion probability."""

    alpha: float
    beta: float

    @property
    def mean(self) -> float:
        return self.alpha / (self.alpha + self.beta)

    def draw(self, rng: random.Random) -> float:
        return rng.betavariate(self.alpha, self.beta)

    def updated(self, *, trials: int, successes: int) -> Beta:
        """The posterior after ``successes`` out of ``trials`` more Bernoulli outcomes."""
        if not 0 <= successes <= trials:
            raise ValueError(f"successes ({successes}) must be within 0..trials ({trials})")
        return Beta(self.alpha + successes, self.beta + trials - successes)


def prior(*, rate: float, strength: float) -> Beta:
    """The cold-start prior of a configured rate: ``strength`` pseudo-observations of which
    a share ``rate`` succeeded (alpha = rate * strength, beta = (1 - rate) * strength)."""
    if not 0 <= rate <= 1:
        raise ValueError(f"a rate is within [0, 1], got {rate}")
    if strength <= 0:
        raise ValueError(f"a prior strength is positive, got {strength}")
    return Beta(
        max(rate * strength, MIN_PSEUDO_COUNT), max((1 - rate) * strength, MIN_PSEUDO_COUNT)
    )


@dataclass(frozen=True, slots=True)
class Funnel:
    """The posteriors of one candidate's funnel stages."""

    accept: Beta
    approve: Beta
    fund: Beta
    returned: Beta


@dataclass(frozen=True, slots=True)
class FeeCard:
    """What a product pays per stage, in ``currency`` (its fee schedule's, now in force);
    ``to_platform`` converts an amount in ``currency`` to the platform currency (1 when
    they are the same; None when no rate is known: the card is then worth nothing)."""

    currency: str
    cpl: Decimal
    cpa: Decimal
    cpf_rate: Decimal
    cpf_min: Decimal
    cpf_max: Decimal | None
    to_platform: Decimal | None = Decimal(1)


def cpf_fee(card: FeeCard, *, principal: Decimal) -> Decimal:
    """The CPF of a loan of ``principal`` (platform currency), in the card's currency:
    the rate times the principal converted, within the card's minimum and maximum."""
    if card.to_platform is None or card.to_platform <= 0:
        return Decimal(0)
    fee = max(card.cpf_rate * principal / card.to_platform, card.cpf_min)
    if card.cpf_max is not None:
        fee = min(fee, card.cpf_max)
    return fee


def expected_value(
    *, accept: float, approve: float, fund: float, card: FeeCard | None, principal: Decimal
) -> float:
    """Sum over billable stages of P(stage reached) x its fee, in the platform currency."""
    if card is None or card.to_platform is None:
        return 0.0
    in_card = (
        accept * float(card.cpl)
        + accept * approve * float(card.cpa)
        + accept * approve * fund * float(cpf_fee(card, principal=principal))
    )
    return in_card * float(card.to_platform)


def credit(card: FeeCard | None) -> float:
    """What a return credits (the lead's CPL), in the platform currency."""
    if card is None or card.to_platform is None:
        return 0.0
    return float(card.cpl) * float(card.to_platform)


@dataclass(frozen=True, slots=True)
class Candidate:
    product_id: uuid.UUID
    partner_id: uuid.UUID
    funnel: Funnel
    card: FeeCard | None


@dataclass(frozen=True, slots=True)
class Scored:
    """A candidate's scoring: its posterior means, the probabilities the score used (draws
    when exploring, else the means), its expected value and score."""

    candidate: Candidate
    means: tuple[float, float, float, float]  # accept, approve, fund, returned
    used: tuple[float, float, float, float]
    sampled: bool
    expected_value: float
    score: float

    @property
    def approval_likelihood(self) -> float:
        """P(accepted and approved), by the posterior means: the applicant's view."""
        return self.means[0] * self.means[1]


def score(
    candidate: Candidate,
    *,
    principal: Decimal,
    explore: bool,
    return_penalty: Decimal,
    rng: random.Random,
) -> Scored:
    funnel = candidate.funnel
    stages = (funnel.accept, funnel.approve, funnel.fund, funnel.returned)
    means = (stages[0].mean, stages[1].mean, stages[2].mean, stages[3].mean)
    used = (
        (stages[0].draw(rng), stages[1].draw(rng), stages[2].draw(rng), stages[3].draw(rng))
        if explore
        else means
    )
    value = expected_value(
        accept=used[0], approve=used[1], fund=used[2], card=candidate.card, principal=principal
    )
    return Scored(
        candidate=candidate,
        means=means,
        used=used,
        sampled=explore,
        expected_value=value,
        score=value - float(return_penalty) * used[3] * used[0] * credit(candidate.card),
    )


def rank(
    candidates: Sequence[Candidate],
    *,
    principal: Decimal,
    explore: bool,
    return_penalty: Decimal,
    rng: random.Random,
) -> list[Scored]:
    """The candidates best first: by score, then (for candidates of equal score, such as
    products without a fee card) by the acceptance chance the score used; ties keep the
    given order (sort is stable)."""
    scored = [
        score(c, principal=principal, explore=explore, return_penalty=return_penalty, rng=rng)
        for c in candidates
    ]
    scored.sort(key=lambda s: (-s.score, -s.used[0]))
    return scored


def applicant_order(scored: Sequence[Scored], *, apr_min: dict[uuid.UUID, Decimal]) -> list[Scored]:
    """The order offers are shown to the applicant in: the likeliest approval first, then
    the cheaper product (its lowest APR); never by fee (CFPB Circular 2024-01)."""
    return sorted(
        scored,
        key=lambda s: (
            -s.approval_likelihood,
            apr_min.get(s.candidate.product_id, Decimal(1)),
            str(s.candidate.product_id),
        ),
    )
