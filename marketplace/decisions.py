"""The routing decision record ("why did it go there"): built in memory by routing and
stored with one INSERT in the intake's transaction; winners added when an auction awards
or a waterfall moves on.

Each candidate's entry (``RoutingDecision.candidates``), best score first, then the boxes
screened out: product, partner (id and name), ``eligible``, ``reasons`` (reason codes of
``marketplace.eligibility.ReasonCode``; empty when eligible), the posterior means and the
probabilities the score used (Thompson draws when the strategy explores), expected value,
score, rank (1 = best score; None when not ranked: screened out, or another product of the
same partner was the applicant's cheaper one) and ``chosen`` (given a lead or pinged)."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from typing import Any

from marketplace.eligibility import Screening
from marketplace.matching import CreditBox
from marketplace.models import Referral, RoutingDecision
from marketplace.ranking import Scored
from marketplace.strategy_spec import StrategyChoice

STAGE_NAMES = ("accept", "approve", "fund", "returned")


def _probabilities(values: tuple[float, float, float, float]) -> dict[str, float]:
    return {name: round(value, 4) for name, value in zip(STAGE_NAMES, values, strict=True)}


def candidate_entries(
    *,
    screening: Screening,
    scored: Sequence[Scored],
    chosen: Iterable[uuid.UUID],
    names: dict[uuid.UUID, str],
) -> list[dict[str, Any]]:
    picked = {str(product_id) for product_id in chosen}
    ranked = {s.candidate.product_id for s in scored}
    entries: list[dict[str, Any]] = []
    for place, item in enumerate(scored, start=1):
        product_id = item.candidate.product_id
        entries.append(
            {
                "product": str(product_id),
                "partner": str(item.candidate.partner_id),
                "partner_name": names.get(item.candidate.partner_id, ""),
                "eligible": True,
                "reasons": [],
                "means": _probabilities(item.means),
                "sampled": _probabilities(item.used) if item.sampled else None,
                "expected_value": f"{item.expected_value:.2f}",
                "score": f"{item.score:.2f}",
                "rank": place,
                "chosen": str(product_id) in picked,
            }
        )
    for box in screening.eligible:
        if box.product_id not in ranked:
            entries.append(_unranked(box.product_id, box.partner_id, names, reasons=[]))
    for rejection in screening.rejected:
        entries.append(
            _unranked(
                rejection.product_id, rejection.partner_id, names, reasons=list(rejection.reasons)
            )
        )
    return entries


def _unranked(
    product_id: uuid.UUID,
    partner_id: uuid.UUID,
    names: dict[uuid.UUID, str],
    *,
    reasons: list[str],
) -> dict[str, Any]:
    return {
        "product": str(product_id),
        "partner": str(partner_id),
        "partner_name": names.get(partner_id, ""),
        "eligible": not reasons,
        "reasons": reasons,
        "means": None,
        "sampled": None,
        "expected_value": None,
        "score": None,
        "rank": None,
        "chosen": False,
    }


def partner_names(boxes: Iterable[CreditBox]) -> dict[uuid.UUID, str]:
    return {box.partner_id: box.partner_name for box in boxes}


def record(
    *,
    referral: Referral,
    choice: StrategyChoice,
    segment: str,
    candidates: list[dict[str, Any]],
    winners: Sequence[uuid.UUID],
) -> RoutingDecision:
    """Store the decision (one INSERT; the referral row may come later in the same
    transaction: foreign keys are checked at commit)."""
    spec = choice.spec
    decision = RoutingDecision(
        referral=referral,
        strategy_key=spec.key,
        strategy_version=spec.version,
        strategy_kind=spec.kind,
        explore=spec.explore,
        experiment_key=choice.experiment_key or "",
        arm_key=choice.arm_key or "",
        bucket_version=choice.bucket_version,
        segment=segment,
        candidates=candidates,
        winners=[str(product_id) for product_id in winners],
    )
    decision.save(force_insert=True)
    return decision


def add_winners(*, referral_id: uuid.UUID, product_ids: Sequence[uuid.UUID]) -> None:
    """Append winners (an auction's award, a fall-back, a waterfall's next) to the
    referral's decision, if it has one, in the caller's transaction; the decision's row
    lock orders concurrent appends of one referral (it is the last lock they take)."""
    if not product_ids:
        return
    decision = (
        RoutingDecision.objects.select_for_update()
        .filter(referral_id=referral_id)
        .only("winners")
        .first()
    )
    if decision is None:
        return  # routed before decisions were recorded
    winners = list(decision.winners)
    winners.extend(str(p) for p in product_ids if str(p) not in winners)
    RoutingDecision.objects.filter(referral_id=referral_id).update(winners=winners)
