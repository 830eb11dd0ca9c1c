"""Holding and releasing routing to a partner or one of its products (billing's credit
limit and budgets, ops decisions).

Every change goes through ``save`` (not ``update``) so ``updated_at`` moves and every
process's product index notices. A release may name the hold it lifts (``reason``): then
a hold set for another reason (ops, the credit limit) stays.
"""

from __future__ import annotations

import uuid

from partners.models import Partner, Product


def hold_routing(*, partner_id: uuid.UUID, reason: str) -> bool:
    """Stop routing to the partner; True if this changed anything."""
    partner = Partner.objects.get(pk=partner_id)
    if partner.routing_hold == reason:
        return False
    partner.routing_hold = reason[:200]
    partner.save(update_fields=["routing_hold", "updated_at"])
    return True


def release_routing(*, partner_id: uuid.UUID, reason: str | None = None) -> bool:
    """Lift the partner's hold (only a hold for ``reason`` when given); True if lifted."""
    partner = Partner.objects.get(pk=partner_id)
    if not partner.routing_hold or (reason is not None and partner.routing_hold != reason[:200]):
        return False
    partner.routing_hold = ""
    partner.save(update_fields=["routing_hold", "updated_at"])
    return True


def hold_product(*, product_id: uuid.UUID, reason: str) -> bool:
    """Stop routing to one product; True if this changed anything."""
    product = Product.objects.get(pk=product_id)
    if product.routing_hold == reason:
        return False
    product.routing_hold = reason[:200]
    product.save(update_fields=["routing_hold", "updated_at"])
    return True


def release_product(*, product_id: uuid.UUID, reason: str | None = None) -> bool:
    """Lift the product's hold (only a hold for ``reason`` when given); True if lifted."""
    product = Product.objects.get(pk=product_id)
    if not product.routing_hold or (reason is not None and product.routing_hold != reason[:200]):
        return False
    product.routing_hold = ""
    product.save(update_fields=["routing_hold", "updated_at"])
    return True
