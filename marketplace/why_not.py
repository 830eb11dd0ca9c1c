"""Why not this product: every reason code that keeps one product from a referral, for the
admin's "why did it not go there", for any product, without a row stored per product per
referral (``marketplace.eligibility`` documents the codes).

The catalogue (product switched off, partner not live, routing holds, the credit box) is read
as it is now; licences and the regulatory rule set as they were at the referral's time.
Dedupe windows and caps are decided only at routing time (under the applicant's lock, and
by the award's cap counters): the referral's ``RoutingDecision`` holds what was decided
then, and this function does not redo it.
"""

from __future__ import annotations

from marketplace.eligibility import (
    ReasonCode,
    explain_box,
    facts_for,
    referral_time,
    static_reasons,
)
from marketplace.matching import box_from_product
from marketplace.models import Referral
from marketplace.regulation import rules_at
from marketplace.routing import application_for
from partners.holds import is_held
from partners.models import PartnerStatus, Product


def explain_product(*, referral: Referral, product: Product) -> tuple[str, ...]:
    """The reason codes that keep ``product`` from ``referral`` (see the module text), in
    the order of the documented list; empty when every rule checked here lets it through."""
    reasons: list[str] = []
    if not product.is_active:
        reasons.append(ReasonCode.PRODUCT_INACTIVE)
    if product.partner.status not in {PartnerStatus.LIVE, PartnerStatus.SANDBOX}:
        reasons.append(ReasonCode.PARTNER_NOT_LIVE)
    if is_held(partner_id=product.partner_id) or is_held(
        partner_id=product.partner_id, product_id=product.pk
    ):
        reasons.append(ReasonCode.ROUTING_HOLD)
    rules = rules_at(referral_time(referral))
    box = box_from_product(product)
    reasons.extend(explain_box(box, application_for(referral), rules.all_in_cost_cap))
    if referral.grant is None:
        # No usable consent: the referral was not routable, to anyone.
        reasons.append(ReasonCode.CONSENT_SCOPE)
    else:
        reasons.extend(
            static_reasons(box, facts_for(referral, referral.grant, rules=rules, boxes=[box]))
        )
    found = {str(reason) for reason in reasons}
    return tuple(code for code in ReasonCode.values if code in found)
