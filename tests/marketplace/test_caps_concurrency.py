"""Volume caps and budgets are counted atomically: concurrent referrals never overshoot a
product's daily or monthly cap, nor a partner's monthly budget, on the intake path (direct
leads) or the award path (ping-post auctions), and a lead that never reached its partner
gives its room back. PostgreSQL only: SQLite serialises writes, so it cannot show the race.
The daily cap alone is also raced in test_concurrency.py."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

import pytest
from django.db.models import Sum
from django.utils import timezone
from rest_framework.test import APIClient

from billing import budgets
from marketplace import caps, fee_cards
from marketplace.models import CapCounter, CapKind, CapReservation, CapScope, Lead, Referral
from partners.keys import issue_api_key
from partners.models import DeliveryMode, Partner, Product, TrafficSource
from partners.months import month_of
from tests.concurrency import run_concurrently
from tests.conftest import SimulatedPartner, partner_client
from tests.factories import PartnerFactory, ProductFactory, referral_payload
from tests.marketplace.conftest import REFERRALS_URL, create_referral, set_lead_status

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

RACERS = 8
CROWD = 36  # referrals at once through the API


@pytest.fixture
def no_delivery(monkeypatch: pytest.MonkeyPatch) -> None:
    """Leads stay matched: intake commits here, so the on-commit delivery would run."""
    monkeypatch.setattr("marketplace.tasks.deliver_lead", SimpleNamespace(delay=lambda _: None))


def race(source: TrafficSource, racers: int = RACERS) -> list[Referral | BaseException]:
    return run_concurrently(
        *(lambda: create_referral(source, referral_payload()) for _ in range(racers))
    )


def crowd(source: TrafficSource) -> list[Any]:
    """CROWD referrals of different applicants through the API at once, each with its own
    client (its own key and connection); the responses, or what a thread raised."""
    clients = []
    for _ in range(CROWD):
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {issue_api_key(source=source).plaintext}")
        clients.append(client)

    def post(client: APIClient) -> Callable[[], Any]:
        return lambda: client.post(REFERRALS_URL, referral_payload(), format="json")

    return run_concurrently(*(post(client) for client in clients))


def statuses(responses: list[Any]) -> list[int | str]:
    return [r.status_code if hasattr(r, "status_code") else repr(r) for r in responses]


def counter(scope: str, owner: object, kind: str, *, day: bool = False) -> Decimal:
    now = timezone.now()
    period = now.date() if day else month_of(now)
    row = CapCounter.objects.filter(
        scope=scope, owner_id=owner, kind=kind, period=period, is_sandbox=False
    ).first()
    return row.used if row is not None else Decimal(0)


def card(product: Product, cpl: str) -> None:
    """The product's CPL in CNY, as billing's fee schedule would write it."""
    fee_cards.set_fee_card(
        product_id=product.id,
        currency="CNY",
        cpl=Decimal(cpl),
        cpa=Decimal("250.00"),
        cpf_rate=Decimal("0.0300"),
        cpf_min=Decimal("50.00"),
        cpf_max=None,
        to_platform=Decimal(1),
    )


def taken(product: Product) -> list[Lead]:
    """The product's leads whose award stands (not given back)."""
    return list(Lead.objects.filter(product=product).exclude(status__in=caps.NOT_TAKEN).order_by())


def test_monthly_cap_holds_under_concurrent_referrals(
    source: TrafficSource, consent_text: object, no_delivery: None
) -> None:
    capped = ProductFactory(monthly_cap=3)

    results = race(source)

    assert all(isinstance(result, Referral) for result in results), results
    assert Lead.objects.filter(product=capped).count() == 3
    assert counter(CapScope.PRODUCT, capped.id, CapKind.MONTH) == 3


def test_daily_and_monthly_caps_together_hold_and_a_lost_lead_gives_its_room_back(
    source: TrafficSource, consent_text: object, no_delivery: None
) -> None:
    """Earlier leads this month count against the monthly cap; the daily product's earlier
    leads were rejected on post, so they gave their room back. Every referral still finds
    the uncapped partner: a full product is skipped, not the referral."""
    monthly = ProductFactory(monthly_cap=4, apr_min="0.0900")
    daily = ProductFactory(daily_cap=2, apr_min="0.1000")
    spare = ProductFactory(apr_min="0.1200")
    earlier = [create_referral(source, referral_payload()) for _ in range(2)]
    for lead in Lead.objects.filter(referral__in=earlier, product=daily):
        set_lead_status(lead, "post_rejected")
        assert caps.release(lead_id=lead.id)
        assert not caps.release(lead_id=lead.id)  # once
    assert counter(CapScope.PRODUCT, monthly.id, CapKind.MONTH) == 2
    assert counter(CapScope.PRODUCT, daily.id, CapKind.DAY, day=True) == 0

    results = race(source)

    assert all(isinstance(result, Referral) for result in results), results
    new = Lead.objects.exclude(referral__in=earlier)
    assert Lead.objects.filter(product=monthly).count() == 4
    assert new.filter(product=daily).count() == 2
    assert new.filter(product=spare).count() == RACERS
    assert counter(CapScope.PRODUCT, daily.id, CapKind.DAY, day=True) == 2


def test_a_crowd_of_referrals_never_overshoots_a_daily_cap_or_a_budget(
    source: TrafficSource, consent_text: object, no_delivery: None
) -> None:
    """36 applicants at once through the API: a direct product capped at 5 a day, a partner
    whose budget (100.00) pays for 3 leads at CPL 30.00, and an uncapped product. Exactly
    5 and 3 leads, every request a 201 (no 500, no deadlock), counters equal to the
    leads."""
    capped = ProductFactory(daily_cap=5, apr_min="0.0900")
    budgeted_partner = PartnerFactory(monthly_budget=Decimal("100.00"))
    budgeted = ProductFactory(partner=budgeted_partner, apr_min="0.1000")
    card(budgeted, "30.00")
    spare = ProductFactory(apr_min="0.1200")

    responses = crowd(source)

    assert statuses(responses) == [201] * CROWD
    assert Lead.objects.filter(product=capped).count() == 5
    assert Lead.objects.filter(product=budgeted).count() == 3
    assert Lead.objects.filter(product=spare).count() == CROWD
    assert counter(CapScope.PRODUCT, capped.id, CapKind.DAY, day=True) == 5
    reserved = counter(CapScope.PARTNER, budgeted_partner.id, CapKind.RESERVED)
    assert reserved == Decimal("90.00")
    assert (
        reserved
        == CapReservation.objects.filter(partner_id=budgeted_partner.id).aggregate(
            total=Sum("partner_amount")
        )["total"]
    )
    total, _ = budgets.month_to_date(partner_id=budgeted_partner.id)
    assert total == Decimal("90.00") <= budgeted_partner.monthly_budget


def ping_post(sim: SimulatedPartner, *, daily_cap: int) -> Product:
    product = sim.product
    product.delivery_mode = DeliveryMode.PING_POST
    product.ping_url = sim.simulator.url_for(sim.partner.slug, "ping")
    product.ping_timeout_ms = 2000
    product.daily_cap = daily_cap
    product.save()
    return product


def test_concurrent_auctions_award_within_the_cap_and_the_budget_and_charges_stay_within(
    simulator_factory: Callable[..., SimulatedPartner],
    source: TrafficSource,
    consent_text: object,
    settings: Any,
) -> None:
    """36 applicants at once through the API and the whole award path (the auction runs
    and the winners are posted in each request's own after-commit work): one ping-post
    partner bidding 30.00 with a daily cap of 5 and a budget of 100.00, rejecting about
    half of the posts (each rejection gives its room back). However the races fall, the
    awards that stand never exceed the cap nor the budget; once the partner accepts its
    leads, billing's spend (the reservations standing for the CPL charges) stays within
    the budget too."""
    settings.AUCTION_BUDGET_MS = 3000
    sim = simulator_factory(bid_min=Decimal("30.00"), bid_max=Decimal("30.00"), accept_rate=0.5)
    product = ping_post(sim, daily_cap=5)
    partner = Partner.objects.get(pk=sim.partner.pk)
    partner.monthly_budget = Decimal("100.00")
    partner.save(update_fields=["monthly_budget"])
    ProductFactory(apr_min="0.1200")  # a direct product: every referral goes somewhere

    responses = crowd(source)

    assert statuses(responses) == [201] * CROWD
    standing = taken(product)
    awarded = Lead.objects.filter(product=product).count()
    print(f"auction leads awarded {awarded}, standing {len(standing)}")
    assert len(standing) <= 3  # 3 x 30.00 fill 100.00 before the cap of 5
    assert sum((lead.bid_amount or Decimal(0) for lead in standing), Decimal(0)) <= Decimal(
        "100.00"
    )
    assert counter(CapScope.PRODUCT, product.id, CapKind.DAY, day=True) == len(standing)
    reserved = counter(CapScope.PARTNER, partner.id, CapKind.RESERVED)
    assert reserved == sum((lead.bid_amount or Decimal(0) for lead in standing), Decimal(0))
    assert reserved <= partner.monthly_budget

    client = partner_client(partner)
    for lead in standing:
        response = client.post(
            f"/api/v1/partner/leads/{lead.id}/events",
            {
                "event_id": f"acc-{lead.id}",
                "type": "accepted",
                "occurred_at": (lead.delivered_at or timezone.now()).isoformat(),
            },
            format="json",
        )
        assert response.status_code in (200, 201), response.content
    total, _ = budgets.month_to_date(partner_id=partner.id)
    assert total == reserved <= partner.monthly_budget
