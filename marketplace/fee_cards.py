"""Fee cards: what each product pays per billable stage now, kept in marketplace for
ranking (``marketplace.ranking``). Billing owns fee schedules and sits above marketplace
(the layering contract), so billing calls :func:`set_fee_card` / :func:`clear_fee_card`
whenever a schedule is created or changed, and its ``sync_fee_cards`` command (also run
hourly by beat, for schedules that come into force later) writes every product's."""

from __future__ import annotations

import uuid
from decimal import Decimal

from marketplace import learning
from marketplace.models import ProductFeeCard


def set_fee_card(
    *,
    product_id: uuid.UUID,
    currency: str,
    cpl: Decimal,
    cpa: Decimal,
    cpf_rate: Decimal,
    cpf_min: Decimal,
    cpf_max: Decimal | None,
    to_platform: Decimal | None,
    schedule_ref: str = "",
) -> ProductFeeCard:
    """Write (or replace) the product's card: the fees of the schedule in force for it, in
    that schedule's currency; ``to_platform`` converts one unit of it into the platform
    currency (None: no rate known)."""
    card, _ = ProductFeeCard.objects.update_or_create(
        product_id=product_id,
        defaults=dict(
            currency=currency,
            cpl=cpl,
            cpa=cpa,
            cpf_rate=cpf_rate,
            cpf_min=cpf_min,
            cpf_max=cpf_max,
            to_platform=to_platform,
            schedule_ref=schedule_ref,
        ),
    )
    learning.inputs.invalidate()
    return card


def clear_fee_card(*, product_id: uuid.UUID) -> None:
    """The product has no schedule in force: it is worth nothing to ranking."""
    ProductFeeCard.objects.filter(product_id=product_id).delete()
    learning.inputs.invalidate()
