"""Per-product limits on sharing (``Product.max_shared_partners``) and product holds
(``partners.holds``: a ``RoutingHold`` of one product, e.g. its monthly budget reached)."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

import pytest
from pytest_django.fixtures import Settings as SettingsWrapper

from marketplace import auctions
from marketplace.matching import product_index
from marketplace.models import AuctionMode, Referral
from marketplace.routing import limit_shared, shared_set_limit
from partners.holds import lift_hold, place_hold
from partners.models import DeliveryMode, HoldReason, Product
from tests.factories import ProductFactory
from tests.marketplace.test_matching import make_box


def product(rank: int, **overrides: Any) -> Product:
    """A direct-post product of a new partner, ``rank`` in consumer order (lower APR)."""
    return ProductFactory(apr_min=Decimal(f"0.1{rank}00"), **overrides)


def lead_partners(referral: Referral) -> set[object]:
    return set(referral.leads.values_list("partner_id", flat=True))


# --- The greedy cut, pure -----------------------------------------------------------------


def test_no_limits_keeps_up_to_max_partners(settings: SettingsWrapper) -> None:
    settings.MAX_PARTNERS_PER_REFERRAL = 3
    boxes = [make_box() for _ in range(5)]
    assert limit_shared(boxes) == boxes[:3]
    assert shared_set_limit(boxes[:3]) == 3


@pytest.mark.parametrize(
    ("limits", "kept"),
    [
        ([None, None, None, None], [0, 1, 2, 3]),
        ([2, None, None, None], [0, 1]),  # the first allows two partners in all
        ([None, None, 2, None], [0, 1, 3]),  # the third would make a set of three: skipped
        ([None, 1, None, None], [0, 2, 3]),  # exclusive in all but name: never shared
        ([3, None, None, None], [0, 1, 2]),
        ([None, None, None, 3], [0, 1, 2]),
        ([1, None, None, None], [0]),  # alone: nobody may join it
    ],
)
def test_greedy_in_consumer_order(
    settings: SettingsWrapper, limits: list[int | None], kept: list[int]
) -> None:
    settings.MAX_PARTNERS_PER_REFERRAL = 4
    boxes = [make_box(max_shared=limit) for limit in limits]

    chosen = limit_shared(boxes)

    assert chosen == [boxes[i] for i in kept]
    assert all(len(chosen) <= (box.max_shared or 4) for box in chosen)


def test_already_chosen_partners_count(settings: SettingsWrapper) -> None:
    settings.MAX_PARTNERS_PER_REFERRAL = 4
    boxes = [make_box(max_shared=2), make_box(), make_box()]
    assert limit_shared(boxes, already=2) == boxes[1:3]


# --- Routing -------------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_product_limits_the_shared_set_it_is_in(
    make_referral: Callable[..., Referral], settings: SettingsWrapper
) -> None:
    settings.MAX_PARTNERS_PER_REFERRAL = 4
    first = product(1, max_shared_partners=2)
    second = product(2)
    product(3)
    product(4)

    referral = make_referral()

    assert lead_partners(referral) == {first.partner_id, second.partner_id}


@pytest.mark.django_db
def test_a_product_that_would_overfill_is_left_out_for_later_ones(
    make_referral: Callable[..., Referral], settings: SettingsWrapper
) -> None:
    settings.MAX_PARTNERS_PER_REFERRAL = 3
    first, second = product(1), product(2)
    picky = product(3, max_shared_partners=2)
    fourth = product(4)

    referral = make_referral()

    assert lead_partners(referral) == {first.partner_id, second.partner_id, fourth.partner_id}
    assert picky.partner_id not in lead_partners(referral)


@pytest.mark.django_db
def test_the_auction_gets_only_the_places_the_direct_products_allow(
    make_referral: Callable[..., Referral], settings: SettingsWrapper
) -> None:
    settings.MAX_PARTNERS_PER_REFERRAL = 4
    direct = product(1, max_shared_partners=3)
    pinged = product(
        2, delivery_mode=DeliveryMode.PING_POST, ping_url="http://127.0.0.1:9/unused/ping"
    )
    too_picky = product(
        3,
        delivery_mode=DeliveryMode.PING_POST,
        ping_url="http://127.0.0.1:9/unused/ping",
        max_shared_partners=1,
    )

    referral = make_referral()

    assert lead_partners(referral) == {direct.partner_id}
    auction = referral.auction
    assert (auction.mode, auction.max_winners) == (AuctionMode.SHARED, 2)
    assert auction.candidate_product_ids == [str(pinged.id)]
    assert str(too_picky.id) not in auction.candidate_product_ids


@pytest.mark.django_db
def test_auction_winners_respect_every_winners_limit(
    make_referral: Callable[..., Referral], settings: SettingsWrapper
) -> None:
    settings.MAX_PARTNERS_PER_REFERRAL = 4
    product(1)  # one direct lead
    for rank in (2, 3):
        product(
            rank, delivery_mode=DeliveryMode.PING_POST, ping_url="http://127.0.0.1:9/unused/ping"
        )
    auction = make_referral().auction
    assert auction.max_winners == 3

    def row(limit: int | None) -> Any:
        return SimpleNamespace(product=SimpleNamespace(max_shared_partners=limit))

    best, picky, third, fourth = row(None), row(2), row(None), row(None)
    # direct + best = 2; picky would make 3 > 2: skipped; third and fourth fill the places.
    assert auctions._winners(auction, [best, picky, third, fourth], alive=[]) == [
        best,
        third,
        fourth,
    ]
    # A winner's limit binds those who follow it (fallback next to an alive winner).
    assert auctions._winners(auction, [best, third], alive=[row(3)]) == [best]
    # The best bidder allows two in all (itself and the direct lead): nobody else joins.
    two = row(2)
    assert auctions._winners(auction, [two, best, third], alive=[]) == [two]
    # Without limits it is simply the best max_winners.
    rows = [row(None) for _ in range(5)]
    assert auctions._winners(auction, rows, alive=[]) == rows[:3]


# --- Product holds ---------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_held_product_gets_no_leads_and_its_partners_other_product_does(
    make_referral: Callable[..., Referral],
) -> None:
    held = product(1)
    sibling = ProductFactory(partner=held.partner, name="Second", apr_min=Decimal("0.1900"))
    hold = {"partner_id": held.partner_id, "product_id": held.id}
    assert place_hold(**hold, reason=HoldReason.BUDGET) is True
    assert place_hold(**hold, reason=HoldReason.BUDGET) is False

    referral = make_referral()

    assert list(referral.leads.values_list("product_id", flat=True)) == [sibling.id]
    assert held.id not in {box.product_id for box in product_index.boxes()}

    assert lift_hold(**hold, reason=HoldReason.OPS_PAUSE) is False
    assert lift_hold(**hold, reason=HoldReason.BUDGET) is True
    assert held.id in {box.product_id for box in product_index.boxes()}
