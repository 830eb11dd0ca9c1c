"""Keep marketplace's fee cards (``marketplace.fee_cards``) equal to the fee schedules in
force: routing ranks partners by what they pay (``marketplace.ranking``) but may not import
billing (the layering contract), so billing writes each product's card whenever a schedule
is created, changed or deleted (``billing.fees``, the fee schedule admin), and
``sync_fee_cards`` (command, and hourly beat for schedules that start later) writes all.

A product's card holds the base fees (CPL, CPA, CPF rate and bounds; volume tiers are
left out: ranking needs the order of magnitude, not the month's marginal price) of the
schedule in force now, its own or its partner's, in that schedule's currency, with the
rate in force from it to the platform currency (none known: the card says so)."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal

from django.conf import settings
from django.utils import timezone

from billing import fx
from billing.models import FeeSchedule
from billing.quotes import Schedules
from marketplace import fee_cards
from partners.models import Product


def _to_platform(currency: str, at: datetime) -> Decimal | None:
    if currency == settings.DEFAULT_CURRENCY:
        return Decimal(1)
    rate = fx.rate_in_force(from_currency=currency, to_currency=settings.DEFAULT_CURRENCY, at=at)
    if rate is not None:
        return rate.rate
    # Rates are often entered one way only (CNY -> USD): use the inverse.
    inverse = fx.rate_in_force(from_currency=settings.DEFAULT_CURRENCY, to_currency=currency, at=at)
    if inverse is None or not inverse.rate:
        return None
    return (Decimal(1) / inverse.rate).quantize(Decimal("0.00000001"))


def sync_partner(*, partner_id: uuid.UUID, at: datetime | None = None) -> int:
    """Write the cards of every product of the partner from the schedules in force at
    ``at`` (now); returns the cards written (products without a schedule lose theirs)."""
    at = at or timezone.now()
    schedules = Schedules.read(partner_id)
    written = 0
    for product_id in Product.objects.filter(partner_id=partner_id).values_list("id", flat=True):
        schedule = schedules.in_force(product_id=product_id, at=at)
        if schedule is None:
            fee_cards.clear_fee_card(product_id=product_id)
            continue
        _write(product_id, schedule, at)
        written += 1
    return written


def _write(product_id: uuid.UUID, schedule: FeeSchedule, at: datetime) -> None:
    fee_cards.set_fee_card(
        product_id=product_id,
        currency=schedule.currency,
        cpl=schedule.cpl,
        cpa=schedule.cpa,
        cpf_rate=schedule.cpf_rate,
        cpf_min=schedule.cpf_min,
        cpf_max=schedule.cpf_max,
        to_platform=_to_platform(schedule.currency, at),
        schedule_ref=str(schedule.pk),
    )


def sync_all(*, at: datetime | None = None) -> int:
    """Every partner's products' cards; returns the cards written."""
    partners = Product.objects.values_list("partner_id", flat=True).distinct().order_by()
    return sum(sync_partner(partner_id=partner_id, at=at) for partner_id in partners)
