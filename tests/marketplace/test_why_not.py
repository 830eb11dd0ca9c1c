"""Why not this product: the admin's answer for any product and referral, from the same
rules routing applies, without a row stored per product per referral."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal

import pytest

from marketplace.models import Referral
from marketplace.why_not import explain_product
from partners.holds import place_hold
from partners.models import HoldReason, Product
from tests.factories import PartnerFactory, ProductFactory


@pytest.mark.django_db
def test_each_product_says_why_it_did_not_get_the_referral(
    make_referral: Callable[..., Referral],
) -> None:
    taken = ProductFactory()
    switched_off = ProductFactory(is_active=False)
    paused = ProductFactory(partner=PartnerFactory(status="paused"))
    held = ProductFactory()
    place_hold(partner_id=held.partner_id, reason=HoldReason.OPS_PAUSE, note="matrix")
    narrow = ProductFactory(min_amount=Decimal("9000.00"), risk_tiers=["R1"])
    dear = ProductFactory(upfront_fee_rate=Decimal("0.0500"))
    unlisted = ProductFactory(partner=PartnerFactory(licence=None))
    referral = make_referral()

    def why(product: Product) -> tuple[str, ...]:
        product.refresh_from_db()
        return explain_product(referral=referral, product=product)

    assert referral.leads.get().product_id == taken.id
    assert why(taken) == ()  # (its dedupe window is routing's to decide, under its locks)
    assert why(switched_off) == ("product_inactive",)
    assert why(paused) == ("partner_not_live",)
    assert why(held) == ("routing_hold",)
    assert why(narrow) == ("box_amount", "box_tier")
    assert why(dear) == ("reg_all_in_cost",)
    assert why(unlisted) == ("licence_missing",)
