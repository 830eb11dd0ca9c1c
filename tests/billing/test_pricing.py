"""billing.pricing.price: a pure function, tested without a database."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from billing.money import CENT
from billing.pricing import FeeTerms, price

TERMS = FeeTerms(
    cpl=Decimal("40.00"),
    cpa=Decimal("250.00"),
    cpf_rate=Decimal("0.0300"),
    cpf_min=Decimal("50.00"),
    cpf_max=Decimal("2000.00"),
)


def test_cpl_is_the_schedules_fee_per_accepted_lead() -> None:
    assert price("cpl", TERMS) == Decimal("40.00")


def test_cpa_is_the_schedules_fee_per_approval() -> None:
    assert price("cpa", TERMS) == Decimal("250.00")


def test_cpf_is_the_rate_times_the_principal() -> None:
    assert price("cpf", TERMS, principal=Decimal("15000.00")) == Decimal("450.00")


def test_cpf_rounds_an_exact_half_cent_up() -> None:
    # 1234.50 * 0.0300 = 37.035: ROUND_HALF_UP gives 37.04 where banker's rounding gives 37.03.
    terms = FeeTerms(Decimal(0), Decimal(0), Decimal("0.0300"), Decimal(0), None)

    assert price("cpf", terms, principal=Decimal("1234.50")) == Decimal("37.04")


def test_cpf_rounds_below_half_a_cent_down() -> None:
    terms = FeeTerms(Decimal(0), Decimal(0), Decimal("0.0300"), Decimal(0), None)

    # 1234.49 * 0.03 = 37.0347
    assert price("cpf", terms, principal=Decimal("1234.49")) == Decimal("37.03")


def test_cpf_below_the_minimum_is_raised_to_it() -> None:
    # 3% of 1000 is 30, under the 50 minimum.
    assert price("cpf", TERMS, principal=Decimal("1000.00")) == Decimal("50.00")


def test_cpf_above_the_maximum_is_capped() -> None:
    # 3% of 100000 is 3000, over the 2000 maximum.
    assert price("cpf", TERMS, principal=Decimal("100000.00")) == Decimal("2000.00")


def test_cpf_without_a_maximum_is_not_capped() -> None:
    terms = FeeTerms(Decimal(0), Decimal(0), Decimal("0.0300"), Decimal("50.00"), None)

    assert price("cpf", terms, principal=Decimal("1000000.00")) == Decimal("30000.00")


def test_cpf_without_a_principal_is_refused() -> None:
    with pytest.raises(ValueError, match="principal"):
        price("cpf", TERMS)


def test_an_unknown_fee_kind_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown fee kind"):
        price("bogus", TERMS)


principals = st.decimals(
    min_value=Decimal("0.01"), max_value=Decimal("10000000"), places=2, allow_nan=False
)
money = st.decimals(min_value=Decimal(0), max_value=Decimal("100000"), places=2)
rates = st.decimals(min_value=Decimal(0), max_value=Decimal(1), places=4)


@st.composite
def fee_terms(draw: st.DrawFn) -> FeeTerms:
    cpf_min = draw(money)
    cpf_max = draw(st.none() | money.map(lambda extra: cpf_min + extra))
    return FeeTerms(draw(money), draw(money), draw(rates), cpf_min, cpf_max)


@given(terms=fee_terms(), kind=st.sampled_from(["cpl", "cpa", "cpf"]), principal=principals)
def test_every_price_is_quantized_to_cents(terms: FeeTerms, kind: str, principal: Decimal) -> None:
    fee = price(kind, terms, principal=principal)

    assert fee == fee.quantize(CENT)
    assert fee.as_tuple().exponent == -2


@given(terms=fee_terms(), principal=principals)
def test_cpf_stays_within_its_minimum_and_maximum(terms: FeeTerms, principal: Decimal) -> None:
    fee = price("cpf", terms, principal=principal)

    assert fee >= terms.cpf_min
    if terms.cpf_max is not None:
        assert fee <= terms.cpf_max


@given(terms=fee_terms(), principal=principals, more=principals)
def test_cpf_never_falls_as_the_principal_grows(
    terms: FeeTerms, principal: Decimal, more: Decimal
) -> None:
    assert price("cpf", terms, principal=principal) <= price(
        "cpf", terms, principal=principal + more
    )
