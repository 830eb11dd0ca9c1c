"""Credit limits: routing to a partner pauses while its exposure exceeds its limit.

Exposure (``billing.balances.partner_balance``) is the balance of issued documents and
payments plus draft invoices plus ledger entries not invoiced yet with their VAT: what the
partner owes and will owe, each entry counted once.

Evaluated after every charge, invoice, credit note and payment of the partner. Only the
hold billing set is released here; a hold ops set for another reason stays.
"""

from __future__ import annotations

import uuid

from billing.balances import partner_balance
from billing.models import PartnerBillingProfile
from partners.holds import hold_routing, release_routing
from partners.models import Partner

HOLD_REASON = "over credit limit"


def evaluate_credit_limit(*, partner_id: uuid.UUID) -> bool | None:
    """True if routing is now held for the limit, False if not, None without a limit."""
    profile = PartnerBillingProfile.objects.filter(partner_id=partner_id).first()
    if profile is None or profile.credit_limit is None:
        return None
    owed = partner_balance(partner_id=partner_id, currency=profile.credit_limit_currency)
    if owed.exposure > profile.credit_limit:
        hold_routing(partner_id=partner_id, reason=HOLD_REASON)
        return True
    held_by_us = Partner.objects.filter(pk=partner_id, routing_hold=HOLD_REASON).exists()
    if held_by_us:
        release_routing(partner_id=partner_id)
    return False
