"""Ranking as pure functions: the expected value against a reference computed from the rule
in exact fractions, Thompson draws, posterior updates, cold-start priors, and the
applicant's order that fees never change."""

from __future__ import annotations

import random
import uuid
from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from marketplace.ranking import (
    Beta,
    Candidate,
    FeeCard,
    Funnel,
    applicant_order,
    expected_value,
    prior,
    rank,
)

probabilities = st.floats(min_value=0, max_value=1, allow_nan=False)
money = st.decimals(min_value=0, max_value=5000, places=2, allow_nan=False, allow_infinity=False)
rates = st.decimals(min_value=0, max_value=Decimal("0.1"), places=4)
pseudo = st.floats(min_value=0.01, max_value=500, allow_nan=False)


@st.composite
def cards(draw: st.DrawFn) -> FeeCard:
    low = draw(money)
    high = draw(st.none() | money.filter(lambda m: m >= low))
    return FeeCard(
        currency=draw(st.sampled_from(["CNY", "USD"])),
        cpl=draw(money),
        cpa=draw(money),
        cpf_rate=draw(rates),
        cpf_min=low,
        cpf_max=high,
        to_platform=draw(
            st.decimals(min_value=Decimal("0.1"), max_value=10, places=4) | st.just(Decimal(1))
        ),
    )


def reference_value(pa: float, pp: float, pf: float, card: FeeCard, principal: Decimal) -> Fraction:
    """From the rule: the sum over billable stages of P(stage reached) x the stage's fee.
    CPF is the rate times the principal in the card's currency, clamped to the card's
    bounds; the sum is converted to the platform currency."""
    rate = Fraction(card.to_platform)  # type: ignore[arg-type]
    principal_in_card = Fraction(principal) / rate
    cpf = max(Fraction(card.cpf_rate) * principal_in_card, Fraction(card.cpf_min))
    if card.cpf_max is not None:
        cpf = min(cpf, Fraction(card.cpf_max))
    a, p, f = Fraction(pa), Fraction(pp), Fraction(pf)
    reached = {"cpl": a, "cpa": a * p, "cpf": a * p * f}
    fees = {"cpl": Fraction(card.cpl), "cpa": Fraction(card.cpa), "cpf": cpf}
    return sum((reached[k] * fees[k] for k in fees), Fraction(0)) * rate


@settings(max_examples=300, deadline=None)
@given(probabilities, probabilities, probabilities, cards(), money)
def test_expected_value_equals_the_reference(
    pa: float, pp: float, pf: float, card: FeeCard, principal: Decimal
) -> None:
    got = expected_value(accept=pa, approve=pp, fund=pf, card=card, principal=principal)
    want = float(reference_value(pa, pp, pf, card, principal))
    assert got == pytest.approx(want, rel=1e-9, abs=1e-6)


def test_a_product_without_a_fee_card_or_rate_is_worth_nothing() -> None:
    card = FeeCard("USD", Decimal(50), Decimal(300), Decimal("0.03"), Decimal(0), None, None)
    assert expected_value(accept=1, approve=1, fund=1, card=None, principal=Decimal(9000)) == 0
    assert expected_value(accept=1, approve=1, fund=1, card=card, principal=Decimal(9000)) == 0


def test_cpf_is_clamped_to_the_cards_bounds() -> None:
    card = FeeCard("CNY", Decimal(0), Decimal(0), Decimal("0.03"), Decimal(50), Decimal(200))
    small = expected_value(accept=1, approve=1, fund=1, card=card, principal=Decimal(1000))
    large = expected_value(accept=1, approve=1, fund=1, card=card, principal=Decimal(100000))
    middle = expected_value(accept=1, approve=1, fund=1, card=card, principal=Decimal(5000))
    assert (small, middle, large) == (50.0, 150.0, 200.0)


@settings(max_examples=200, deadline=None)
@given(pseudo, pseudo, st.integers(min_value=0, max_value=2**31 - 1))
def test_thompson_draws_are_probabilities(alpha: float, beta: float, seed: int) -> None:
    rng = random.Random(seed)
    draws = [Beta(alpha, beta).draw(rng) for _ in range(20)]
    assert all(0 <= d <= 1 for d in draws)


@settings(max_examples=200, deadline=None)
@given(pseudo, pseudo, st.integers(min_value=0, max_value=10_000), st.data())
def test_a_posterior_update_adds_successes_and_failures(
    alpha: float, beta: float, trials: int, data: st.DataObject
) -> None:
    successes = data.draw(st.integers(min_value=0, max_value=trials))
    before = Beta(alpha, beta)
    after = before.updated(trials=trials, successes=successes)
    assert after.alpha == pytest.approx(alpha + successes)
    assert after.beta == pytest.approx(beta + trials - successes)
    if trials:
        # The posterior mean lies between the prior mean and the observed share.
        observed = successes / trials
        low, high = sorted((before.mean, observed))
        assert low - 1e-12 <= after.mean <= high + 1e-12


def test_an_update_with_more_successes_than_trials_is_refused() -> None:
    with pytest.raises(ValueError):
        Beta(1, 1).updated(trials=2, successes=3)


@settings(max_examples=200, deadline=None)
@given(probabilities, st.floats(min_value=0.5, max_value=1000, allow_nan=False))
def test_a_cold_start_prior_has_the_configured_rate_and_weight(
    rate: float, strength: float
) -> None:
    beta = prior(rate=rate, strength=strength)
    assert beta.alpha == pytest.approx(max(rate * strength, 0.01))
    assert beta.beta == pytest.approx(max((1 - rate) * strength, 0.01))
    if rate * strength >= 0.01 and (1 - rate) * strength >= 0.01:
        assert beta.mean == pytest.approx(rate)


def _candidate(accept: float, card: FeeCard | None) -> Candidate:
    known = prior(rate=accept, strength=1000)
    even = prior(rate=0.5, strength=1000)
    low = prior(rate=0.01, strength=1000)
    return Candidate(uuid.uuid4(), uuid.uuid4(), Funnel(known, even, even, low), card)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(probabilities, cards()), min_size=1, max_size=8), st.booleans())
def test_rank_orders_by_score_and_keeps_every_candidate(
    items: list[tuple[float, FeeCard]], explore: bool
) -> None:
    candidates = [_candidate(a, card) for a, card in items]
    scored = rank(
        candidates,
        principal=Decimal(8000),
        explore=explore,
        return_penalty=Decimal(1),
        rng=random.Random(7),
    )
    assert sorted(s.candidate.product_id for s in scored) == sorted(
        c.product_id for c in candidates
    )
    assert [s.score for s in scored] == sorted((s.score for s in scored), reverse=True)
    for s in scored:
        card = s.candidate.card
        assert card is not None and card.to_platform is not None
        credit = s.used[3] * s.used[0] * float(card.cpl * card.to_platform)
        assert s.score == pytest.approx(s.expected_value - credit, abs=1e-6)
        assert s.sampled is explore
        if not explore:
            assert s.used == s.means


def test_without_fee_cards_the_likelier_acceptance_ranks_first() -> None:
    likely, unlikely = _candidate(0.9, None), _candidate(0.1, None)
    scored = rank(
        [unlikely, likely],
        principal=Decimal(5000),
        explore=False,
        return_penalty=Decimal(1),
        rng=random.Random(1),
    )
    assert [s.candidate for s in scored] == [likely, unlikely]
    assert all(s.expected_value == 0 for s in scored)


def test_a_high_return_rate_lowers_the_score() -> None:
    card = FeeCard("CNY", Decimal(50), Decimal(0), Decimal(0), Decimal(0), None)
    steady = _candidate(0.8, card)
    funnel = steady.funnel
    returning = Candidate(
        uuid.uuid4(),
        uuid.uuid4(),
        Funnel(funnel.accept, funnel.approve, funnel.fund, prior(rate=0.6, strength=1000)),
        card,
    )
    scored = rank(
        [returning, steady],
        principal=Decimal(5000),
        explore=False,
        return_penalty=Decimal(1),
        rng=random.Random(1),
    )
    assert [s.candidate for s in scored] == [steady, returning]
    # Only CPL here: a return credits it, so the score is what is left after credits.
    assert scored[1].score == pytest.approx(scored[1].expected_value * 0.4, rel=1e-3)


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.tuples(probabilities, probabilities, cards(), rates), min_size=1, max_size=6),
    st.data(),
)
def test_the_applicants_order_never_depends_on_fees(
    items: list[tuple[float, float, FeeCard, Decimal]], data: st.DataObject
) -> None:
    candidates = []
    apr: dict[uuid.UUID, Decimal] = {}
    for accept, approve, card, apr_min in items:
        even = prior(rate=0.5, strength=10)
        funnel = Funnel(
            prior(rate=accept, strength=10), prior(rate=approve, strength=10), even, even
        )
        candidate = Candidate(uuid.uuid4(), uuid.uuid4(), funnel, card)
        candidates.append(candidate)
        apr[candidate.product_id] = apr_min
    args = dict(principal=Decimal(5000), explore=False, return_penalty=Decimal(1))
    shown = applicant_order(rank(candidates, rng=random.Random(1), **args), apr_min=apr)  # type: ignore[arg-type]
    # Other fees for everyone: the same order.
    repriced = [
        Candidate(c.product_id, c.partner_id, c.funnel, data.draw(cards())) for c in candidates
    ]
    again = applicant_order(rank(repriced, rng=random.Random(2), **args), apr_min=apr)  # type: ignore[arg-type]
    assert [s.candidate.product_id for s in shown] == [s.candidate.product_id for s in again]
    likelihoods = [s.approval_likelihood for s in shown]
    assert likelihoods == sorted(likelihoods, reverse=True)
