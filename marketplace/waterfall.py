"""Waterfall routing's next step: a lead whose post the partner rejected, or that failed
for good, goes to the next candidate in the referral's routing decision (score order, at
most the strategy's ``max_partners`` in all; ``marketplace.strategies``).

The line is the decision's ``waterfall`` entries (product ids, in order). Before the next
candidate gets its lead, its dedupe window is decided again under the applicant's row
lock (``marketplace.locks``) and the lead takes its cap counters (``marketplace.caps``),
as an auction's fall-back does: time has passed since intake. A candidate that may no
longer take the lead is skipped. Not for consent refusals (``blocked``): the next would
be refused too.
"""

from __future__ import annotations

import uuid

from django.db import transaction

from consent import grants
from marketplace import caps, decisions, locks
from marketplace.matching import product_index
from marketplace.models import Lead, LeadStatus, RoutingDecision
from marketplace.strategy_spec import StrategyKind
from partners.models import DeliveryMode

POST_LOST = {LeadStatus.POST_REJECTED, LeadStatus.DELIVERY_FAILED}


def fall_back(*, lead_id: uuid.UUID) -> list[Lead]:
    """The next candidate's lead (to post after commit), or nothing: not a waterfall, not
    lost, the line is exhausted. Safe to run twice: a referral's leads are unique per
    partner, and a lead exists for every candidate already tried."""
    with transaction.atomic():
        lead = (
            Lead.objects.filter(pk=lead_id)
            .select_related("referral__grant")
            .only(
                "status",
                "auction_id",
                "product_id",
                "referral__id",
                "referral__subject_id",
                "referral__is_sandbox",
                "referral__grant",
            )
            .first()
        )
        if lead is None or lead.auction_id is not None or lead.status not in POST_LOST:
            return []
        referral = lead.referral
        decision = (
            RoutingDecision.objects.select_for_update()
            .filter(referral_id=referral.id, strategy_kind=StrategyKind.WATERFALL)
            .only("candidates", "winners")
            .first()
        )
        if decision is None:
            return []
        tried = {str(p) for p in Lead.objects.filter(referral_id=referral.id).values_list(
            "product_id", flat=True
        )}  # fmt: skip
        if not decision.winners or decision.winners[-1] != str(lead.product_id):
            return []  # the line already moved on from this lead (a second run)
        line = [
            entry["product"]
            for entry in decision.candidates
            if entry.get("waterfall") and entry["product"] not in tried
        ]
        index, version = product_index.current()
        boxes = {str(box.product_id): box for box in index}
        locks.lock_person(referral.subject_id)
        for product_id in line:
            box = boxes.get(product_id)
            if box is None or box.delivery_mode != DeliveryMode.DIRECT_POST:
                continue  # gone from the catalogue (paused, held, deactivated) meanwhile
            if box.partner_sandbox and not referral.is_sandbox:
                continue  # put back in sandbox meanwhile: never a live applicant
            recent = locks.recently_received(
                subject_id=referral.subject_id,
                is_sandbox=referral.is_sandbox,
                windows={box.partner_id: box.dedupe_days},
            )
            if recent:
                continue
            nxt = Lead(
                referral=referral,
                partner_id=box.partner_id,
                product_id=box.product_id,
                subject_id=referral.subject_id,
                is_sandbox=referral.is_sandbox,
                delivery_mode=DeliveryMode.DIRECT_POST,
                status=LeadStatus.MATCHED,
            )
            claim = caps.Claim(
                nxt.id, box.product_id, box.partner_id, box.daily_cap, box.monthly_cap
            )
            if caps.reserve([claim], is_sandbox=referral.is_sandbox, version=version):
                continue  # at a volume cap or out of budget (nothing taken)
            assert referral.grant is not None
            grants.add_matched_recipients(grant=referral.grant, partner_ids=[box.partner_id])
            nxt.save(force_insert=True)
            decisions.add_winners(referral_id=referral.id, product_ids=[box.product_id])
            return [nxt]
        return []
