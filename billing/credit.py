"""Credit limits: routing to a partner pauses while it owes more than its limit.

Evaluated after every charge, invoice, credit note and payment of the partner. Only the
hold billing set is released here; a hold ops set for another reason stays.
"""

from __future__ import annotations

import uuid

from billing.models import PartnerBillingProfile
from billing.statements import outstanding
from partners.holds import hold_routing, release_routing
from partners.models import Partner

HOLD_REASON = "over credit limit"


def evaluate_credit_limit(*, partner_id: uuid.UUID) -> bool | None:
    """True if routing is now held for the limit, False if not, None without a limit."""
    profile = PartnerBillingProfile.objects.filter(partner_id=partner_id).first()
    if profile is None or profile.credit_limit is None:
        return None
    owed = outstanding(partner_id=partner_id, currency=profile.credit_limit_currency)
    if owed > profile.credit_limit:
        hold_routing(partner_id=partner_id, reason=HOLD_REASON)
        return True
    held_by_us = Partner.objects.filter(pk=partner_id, routing_hold=HOLD_REASON).exists()
    if held_by_us:
        release_routing(partner_id=partner_id)
    return False
