"""Holding and releasing routing to a partner (billing's credit limit, ops decisions)."""

from __future__ import annotations

import uuid

from partners.models import Partner


def hold_routing(*, partner_id: uuid.UUID, reason: str) -> bool:
    """Stop routing to the partner; True if this changed anything. ``save`` (not
    ``update``) so ``updated_at`` moves and every process's product index notices."""
    partner = Partner.objects.get(pk=partner_id)
    if partner.routing_hold == reason:
        return False
    partner.routing_hold = reason[:200]
    partner.save(update_fields=["routing_hold", "updated_at"])
    return True


def release_routing(*, partner_id: uuid.UUID) -> bool:
    partner = Partner.objects.get(pk=partner_id)
    if not partner.routing_hold:
        return False
    partner.routing_hold = ""
    partner.save(update_fields=["routing_hold", "updated_at"])
    return True
