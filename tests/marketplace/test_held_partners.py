"""Held partners and products are not matched, and an auction opened before a hold does not
ping them (partners.holds.without_holds in matching and in auctions)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from marketplace import auctions
from marketplace.matching import product_index
from marketplace.models import Referral
from partners.holds import lift_hold, place_hold
from partners.models import DeliveryMode, HoldReason, Product
from tests.factories import ProductFactory

pytestmark = pytest.mark.django_db


def ping_post_product(name: str) -> Product:
    return ProductFactory(
        name=name, delivery_mode=DeliveryMode.PING_POST, ping_url="https://lender.example/ping"
    )


def indexed() -> set[object]:
    return {box.product_id for box in product_index.boxes()}


def test_each_reason_keeps_a_partner_out_of_the_index_until_it_alone_is_lifted() -> None:
    product = ProductFactory()
    assert product.id in indexed()
    for reason in HoldReason:
        place_hold(partner_id=product.partner_id, reason=reason)
    for reason in HoldReason:
        assert product.id not in indexed(), reason  # the index sees every change at once
        lift_hold(partner_id=product.partner_id, reason=reason)
    assert product.id in indexed()


def test_an_auction_skips_partners_and_products_held_after_it_opened(
    make_referral: Callable[..., Referral],
) -> None:
    partner_held, product_held, free = (ping_post_product(n) for n in ("A", "B", "C"))
    auction = make_referral().auction
    assert {p.id for p in auctions._candidates(auction)} == {
        partner_held.id,
        product_held.id,
        free.id,
    }

    place_hold(partner_id=partner_held.partner_id, reason=HoldReason.CREDIT_LIMIT)
    place_hold(
        partner_id=product_held.partner_id, product_id=product_held.id, reason=HoldReason.BUDGET
    )

    assert [p.id for p in auctions._candidates(auction)] == [free.id]
