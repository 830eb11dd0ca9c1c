"""Credit limits: routing to a partner pauses while its exposure exceeds its limit.

Exposure (``billing.balances.partner_balance``) is the balance of issued documents and
payments plus draft invoices plus ledger entries not invoiced yet with their VAT: what the
partner owes and will owe, each entry counted once.

Evaluated after every charge, invoice, credit note and payment of the partner. The limit
places and lifts only its own hold (``HoldReason.CREDIT_LIMIT``); a hold of ops or of a
budget stands beside it, untouched.
"""

from __future__ import annotations

import uuid

from billing.balances import partner_balance
from billing.models import PartnerBillingProfile
from partners.holds import lift_hold, place_hold
from partners.models import HoldReason

HOLD_REASON = HoldReason.CREDIT_LIMIT


def evaluate_credit_limit(
    *, partner_id: uuid.UUID, profile: PartnerBillingProfile | None = None
) -> bool | None:
    """True if routing is now held for the limit, False if not, None without a limit.
    ``profile``: the partner's billing row when the caller holds it locked already."""
    if profile is None:
        profile = PartnerBillingProfile.objects.filter(partner_id=partner_id).first()
    if profile is None or profile.credit_limit is None:
        return None
    owed = partner_balance(partner_id=partner_id, currency=profile.credit_limit_currency)
    if owed.exposure > profile.credit_limit:
        place_hold(partner_id=partner_id, reason=HOLD_REASON)
        return True
    lift_hold(partner_id=partner_id, reason=HOLD_REASON)
    return False
