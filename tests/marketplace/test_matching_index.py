"""The compiled matching index (marketplace.box_index) answers exactly as the reference:
``fits`` over every box, same boxes in the same order, for random catalogues and applicants."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any
from unittest import mock

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from marketplace import box_index
from marketplace.box_index import BoxIndex, bitset, positions_of
from marketplace.matching import Application, CreditBox, fits, match, product_index
from partners.models import Product
from tests.factories import PartnerFactory, ProductFactory
from tests.marketplace.test_matching import make_app, make_box

APR_CAP = Decimal("0.24")

# Small vocabularies, so boxes and applicants collide on values often.
TIERS = ["R1", "R2", "R3", "R4", "R5", "R6"]
REGIONS = ["CN-GD", "CN-BJ", "CN-SH", "CN-ZJ", "CN-SC"]
EMPLOYMENT = ["employed", "self_employed", "student", "retired"]
PURPOSES = ["consumption", "education", "medical", "business"]
CHANNELS = ["app", "web", "offline"]


def subsets(values: list[str]) -> st.SearchStrategy[frozenset[str]]:
    # Empty sets are frequent: they mean "any" (but "none" for tiers).
    return st.frozensets(st.sampled_from(values), max_size=len(values))


# Cents, written with varied exponents (Decimal("10") and Decimal("10.00") are one bound).
money = st.integers(min_value=0, max_value=200_000).map(lambda cents: Decimal(cents) / 100)
aprs = st.integers(min_value=0, max_value=4000).map(lambda bp: Decimal(bp).scaleb(-4))


def bounds(draw: st.DrawFn, values: st.SearchStrategy[Any]) -> tuple[Any, Any]:
    """A range, now and then inverted (an empty box, as a bad catalogue could hold)."""
    low, high = sorted((draw(values), draw(values)))
    return (high, low) if draw(st.integers(0, 9)) == 0 else (low, high)


@st.composite
def boxes(draw: st.DrawFn) -> CreditBox:
    min_amount, max_amount = bounds(draw, money)
    min_term, max_term = bounds(draw, st.integers(1, 60))
    min_age, max_age = bounds(draw, st.integers(16, 80))
    return make_box(
        min_amount=min_amount,
        max_amount=max_amount,
        min_term=min_term,
        max_term=max_term,
        tiers=draw(subsets(TIERS)),
        regions=draw(subsets(REGIONS)),
        excluded_regions=draw(subsets(REGIONS)),
        min_age=min_age,
        max_age=max_age,
        min_income=draw(money),
        employment_types=draw(subsets(EMPLOYMENT)),
        purposes=draw(subsets(PURPOSES)),
        channels=draw(subsets(CHANNELS)),
        apr_min=draw(aprs),
        apr_max=draw(aprs),
    )


def pick(draw: st.DrawFn, aimed: list[Any], fresh: st.SearchStrategy[Any]) -> Any:
    """Mostly one of the aimed values (a bound itself: the edge that matters), else any."""
    if aimed and draw(st.integers(0, 9)) < 9:
        return draw(st.sampled_from(aimed))
    return draw(fresh)


@st.composite
def applications(draw: st.DrawFn, catalogue: list[CreditBox]) -> tuple[Application, Decimal]:
    """Aimed at one box of the catalogue (at its bounds, at its values): a random applicant
    fits a random box too rarely for the edges to be tried. Any other box may fit too."""
    aim = draw(st.sampled_from(catalogue)) if catalogue else make_box()
    regions = (aim.regions or frozenset(REGIONS)) - aim.excluded_regions
    middle = (aim.min_amount + aim.max_amount) / 2
    app = make_app(
        amount=pick(draw, [aim.min_amount, aim.max_amount, middle], money),
        term_months=pick(draw, [aim.min_term, aim.max_term], st.integers(0, 70)),
        risk_tier=pick(draw, sorted(aim.tiers), st.sampled_from([*TIERS, "R9"])),
        region=pick(draw, sorted(regions), st.sampled_from([*REGIONS, "CN-XZ"])),
        age=pick(draw, [aim.min_age, aim.max_age], st.integers(10, 90)),
        income_floor=pick(draw, [aim.min_income, aim.min_income + 1000], money),
        employment_type=pick(
            draw, sorted(aim.employment_types), st.sampled_from([*EMPLOYMENT, "unknown"])
        ),
        purpose=pick(draw, sorted(aim.purposes), st.sampled_from([*PURPOSES, "other"])),
        channel=pick(draw, sorted(aim.channels), st.sampled_from([*CHANNELS, "partner"])),
    )
    apr_cap = pick(draw, [aim.apr_min, Decimal("0.4")], aprs)
    return app, apr_cap


@pytest.mark.parametrize("max_levels", [box_index.MAX_LEVELS, 3], ids=["compiled", "residual"])
@settings(max_examples=100, deadline=None)
@given(data=st.data())
def test_index_answers_exactly_as_fits_over_every_box(max_levels: int, data: st.DataObject) -> None:
    """With 3 levels most range sides are too varied to compile and are checked per candidate."""
    catalogue = data.draw(st.lists(boxes(), max_size=40), label="catalogue")
    with mock.patch.object(box_index, "MAX_LEVELS", max_levels):
        index = BoxIndex(catalogue)
    assert list(index) == catalogue
    for _ in range(25):
        app, apr_cap = data.draw(applications(catalogue), label="application")
        expected = [box for box in catalogue if fits(box, app, apr_cap=apr_cap)]

        assert match(index, app, apr_cap=apr_cap) == expected


@pytest.mark.parametrize("max_pending", [box_index.MAX_PENDING, 0], ids=["revised", "recompiled"])
@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_a_revised_index_answers_as_a_fresh_index_of_its_boxes(
    max_pending: int, data: st.DataObject
) -> None:
    """Rounds of changes (boxes removed, changed, added) applied as revisions answer exactly as
    ``fits`` over the catalogue they stand for, in the same order; with ``MAX_PENDING`` 0 most
    rounds compile afresh instead."""
    catalogue = data.draw(st.lists(boxes(), max_size=30), label="catalogue")
    index = BoxIndex(catalogue)
    with mock.patch.object(box_index, "MAX_PENDING", max_pending):
        for _ in range(data.draw(st.integers(1, 4), label="rounds")):
            doomed = (
                {
                    box.product_id
                    for box in data.draw(st.lists(st.sampled_from(catalogue)), label="removed")
                }
                if catalogue
                else set()
            )
            added = data.draw(st.lists(boxes(), max_size=5), label="added")
            index = index.revised(
                remove=lambda box, doomed=doomed: box.product_id in doomed,  # type: ignore[misc]
                add=added,
                check=lambda box, app, cap: fits(box, app, apr_cap=cap),
            )
            catalogue = [box for box in catalogue if box.product_id not in doomed] + added
            assert list(index) == catalogue
            assert len(index) == len(catalogue)
            for _ in range(10):
                app, apr_cap = data.draw(applications(catalogue), label="application")
                expected = [box for box in catalogue if fits(box, app, apr_cap=apr_cap)]

                assert match(index, app, apr_cap=apr_cap) == expected


@given(st.sets(st.integers(0, 3000)), st.integers(3001, 3100))
def test_bits_decode_to_the_positions_they_were_made_from(positions: set[int], size: int) -> None:
    """Unset first positions are leading zeros, which ``bin`` drops (the decoder's leading 1
    keeps the digits' count); positions up to 3100 past the last set one are trailing zeros."""
    assert positions_of(bitset(positions, size), size) == sorted(positions)


def test_a_bound_equal_to_the_applicants_value_is_inside_with_cents() -> None:
    edge = make_box(min_amount=Decimal("8000.01"), max_amount=Decimal("8000.01"))
    index = BoxIndex([edge])

    assert match(index, make_app(amount=Decimal("8000.01")), apr_cap=APR_CAP) == [edge]
    assert match(index, make_app(amount=Decimal("8000.00")), apr_cap=APR_CAP) == []
    assert match(index, make_app(amount=Decimal("8000.02")), apr_cap=APR_CAP) == []


def test_the_apr_cap_is_the_one_passed_to_match() -> None:
    cheap, dear = make_box(apr_min=Decimal("0.2400")), make_box(apr_min=Decimal("0.2401"))
    index = BoxIndex([dear, cheap])

    assert match(index, make_app(), apr_cap=Decimal("0.24")) == [cheap]
    assert match(index, make_app(), apr_cap=Decimal("0.2401")) == [dear, cheap]


@pytest.mark.django_db
def test_a_changed_product_is_matched_by_its_new_box() -> None:
    product = ProductFactory(partner=PartnerFactory())
    app = make_app(amount=Decimal("8000.00"), risk_tier="R5")
    assert [b.product_id for b in match(product_index.boxes(), app, apr_cap=APR_CAP)] == [
        product.id
    ]

    Product.objects.filter(pk=product.pk).update(max_amount=Decimal("7999.99"))

    assert isinstance(product_index.boxes(), BoxIndex)
    assert match(product_index.boxes(), app, apr_cap=APR_CAP) == []


def test_many_boxes_are_answered_like_the_scan() -> None:
    """Past MAX_LEVELS distinct bounds (one per box here) the side is checked per candidate."""
    catalogue = [
        make_box(product_id=uuid.UUID(int=i), min_amount=Decimal(i) / 100, max_amount=Decimal(9000))
        for i in range(box_index.MAX_LEVELS * 2)
    ]
    index = BoxIndex(catalogue)
    app = make_app(amount=Decimal("5.12"))

    assert match(index, app, apr_cap=APR_CAP) == [
        b for b in catalogue if fits(b, app, apr_cap=APR_CAP)
    ]
    assert len(match(index, app, apr_cap=APR_CAP)) == 513
