"""Routing's fee cards follow the fee schedules in force: written when a schedule is created
(partner-wide for every product, a product's own overriding it), converted to the platform
currency by the rate in force, and all of them by ``sync_fee_cards``."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import call_command
from django.utils import timezone

from billing import fee_cards, fx
from billing.fees import create_fee_schedule
from billing.pricing import FeeTerms
from marketplace.models import ProductFeeCard
from tests.factories import FeeScheduleFactory, PartnerFactory, ProductFactory

pytestmark = pytest.mark.django_db

START = datetime(2026, 1, 1, tzinfo=UTC)


def _card(product_id: object) -> tuple[object, ...]:
    card = ProductFeeCard.objects.get(product_id=product_id)
    return (card.currency, card.cpl, card.cpa, card.cpf_rate, card.cpf_min, card.to_platform)


def test_a_new_schedule_writes_the_cards_of_the_products_it_prices() -> None:
    partner = PartnerFactory()
    own, other = ProductFactory(partner=partner), ProductFactory(partner=partner)
    terms = FeeTerms(cpl=Decimal("40"), cpa=Decimal("250"), cpf_rate=Decimal("0.03"))

    create_fee_schedule(partner=partner, effective_from=START, terms=terms)
    create_fee_schedule(
        partner=partner, product=own, effective_from=START, terms=FeeTerms(cpl=Decimal("70"))
    )

    assert _card(other.id) == ("CNY", Decimal("40"), Decimal("250"), Decimal("0.03"), 0, 1)
    assert _card(own.id) == ("CNY", Decimal("70"), 0, 0, 0, 1)


def test_a_card_in_another_currency_carries_the_rate_to_the_platform_currency() -> None:
    partner = PartnerFactory()
    product = ProductFactory(partner=partner)
    fx.record_rate(
        from_currency="CNY", to_currency="USD", rate="0.14", effective_from=START, source="test"
    )

    create_fee_schedule(
        partner=partner, effective_from=START, currency="USD", terms=FeeTerms(cpl=Decimal("6"))
    )

    card = ProductFeeCard.objects.get(product_id=product.id)
    assert card.currency == "USD" and card.cpl == Decimal("6")
    assert card.to_platform == (Decimal(1) / Decimal("0.14")).quantize(Decimal("0.00000001"))


def test_a_schedule_not_yet_in_force_changes_nothing_until_its_day() -> None:
    partner = PartnerFactory()
    product = ProductFactory(partner=partner)
    later = timezone.now() + timedelta(days=3)

    create_fee_schedule(partner=partner, effective_from=later, terms=FeeTerms(cpl=Decimal("9")))

    assert not ProductFeeCard.objects.filter(product_id=product.id).exists()
    fee_cards.sync_partner(partner_id=partner.id, at=later + timedelta(hours=1))
    assert _card(product.id)[1] == Decimal("9")


def test_sync_fee_cards_writes_every_card_and_drops_cards_without_a_schedule() -> None:
    priced = ProductFactory(partner=PartnerFactory())
    FeeScheduleFactory(partner=priced.partner)  # stored directly: no card yet
    unpriced = ProductFactory(partner=PartnerFactory())
    ProductFeeCard.objects.create(
        product=unpriced,
        currency="CNY",
        cpl=Decimal(1),
        cpa=Decimal(1),
        cpf_rate=Decimal(0),
        cpf_min=Decimal(0),
        to_platform=Decimal(1),
    )
    out = StringIO()

    call_command("sync_fee_cards", stdout=out)

    assert "fee cards written: 1" in out.getvalue()
    assert _card(priced.id)[:3] == ("CNY", Decimal("40.00"), Decimal("250.00"))
    assert not ProductFeeCard.objects.filter(product_id=unpriced.id).exists()


def test_the_hourly_task_syncs_the_cards() -> None:
    from billing.tasks import sync_fee_cards

    product = ProductFactory(partner=PartnerFactory())
    FeeScheduleFactory(partner=product.partner, cpl=Decimal("33.00"))

    assert sync_fee_cards.apply(throw=True).result == 1
    assert _card(product.id)[1] == Decimal("33.00")


def _admin_client() -> object:
    from django.contrib.auth import get_user_model
    from django.test import Client

    user = get_user_model().objects.create_superuser("fin", "fin@example.invalid", "pw-12345!")
    client = Client()
    client.force_login(user)
    return client


def test_editing_or_deleting_a_schedule_in_the_admin_updates_the_cards() -> None:
    from django.urls import reverse

    partner = PartnerFactory()
    product = ProductFactory(partner=partner)
    schedule = create_fee_schedule(
        partner=partner, effective_from=START, terms=FeeTerms(cpl=Decimal("40"))
    )
    client = _admin_client()
    form = {
        "partner": str(partner.pk),
        "product": "",
        "currency": "CNY",
        "cpl": "55.00",
        "cpa": "0",
        "cpf_rate": "0",
        "cpf_min": "0",
        "cpf_max": "",
        "revshare_rate": "0",
        "effective_from_0": "2026-01-01",
        "effective_from_1": "00:00:00",
        "effective_to_0": "",
        "effective_to_1": "",
        "tiers-TOTAL_FORMS": "0",
        "tiers-INITIAL_FORMS": "0",
        "tiers-MIN_NUM_FORMS": "0",
        "tiers-MAX_NUM_FORMS": "1000",
    }

    changed = client.post(  # type: ignore[attr-defined]
        reverse("admin:billing_feeschedule_change", args=[schedule.pk]), form
    )
    assert changed.status_code == 302, changed.content.decode()[:2000]
    assert _card(product.id)[1] == Decimal("55.00")

    deleted = client.post(  # type: ignore[attr-defined]
        reverse("admin:billing_feeschedule_delete", args=[schedule.pk]), {"post": "yes"}
    )
    assert deleted.status_code == 302
    assert not ProductFeeCard.objects.filter(product_id=product.id).exists()
