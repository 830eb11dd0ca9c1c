"""Intake, delivery and the consent gate under real concurrency (PostgreSQL only): no
deadlock, no 500, caps never overshot, a person never sent twice to one partner within its
dedupe window (the lock order in ``marketplace.locks``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from rest_framework.test import APIClient

from marketplace.models import Lead
from partners.keys import issue_api_key
from partners.models import DeliveryMode, TrafficSource
from tests.concurrency import run_concurrently
from tests.conftest import SimulatedPartner
from tests.factories import referral_payload
from tests.marketplace.conftest import REFERRALS_URL

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def _client(source: TrafficSource) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {issue_api_key(source=source).plaintext}")
    return client


def _post(client: APIClient, payload: dict[str, Any]) -> Callable[[], Any]:
    return lambda: client.post(REFERRALS_URL, payload, format="json")


def _status(response: Any) -> int | str:
    return response.status_code if hasattr(response, "status_code") else repr(response)


def _capped_partners(
    simulator_factory: Callable[..., SimulatedPartner], *, count: int, daily_cap: int
) -> list[SimulatedPartner]:
    sims = []
    for _ in range(count):
        sim = simulator_factory(latency_ms=20)
        sim.product.daily_cap = daily_cap
        sim.product.save()  # bumps updated_at: every process's product index notices
        sims.append(sim)
    return sims


def test_concurrent_referrals_to_capped_partners_never_deadlock_nor_overshoot_a_cap(
    source: TrafficSource,
    consent_text: object,
    simulator_factory: Callable[..., SimulatedPartner],
) -> None:
    # Posts run eagerly after each intake commits, so the consent gate discloses (ledger,
    # disclosure rows) while other intakes count and lock the same capped products.
    sims = _capped_partners(simulator_factory, count=3, daily_cap=5)
    clients = [_client(source) for _ in range(12)]
    payloads = [referral_payload(national_id=f"1101011990030{i:05d}") for i in range(12)]

    responses = run_concurrently(*(_post(c, p) for c, p in zip(clients, payloads, strict=True)))

    assert [_status(r) for r in responses] == [201] * 12
    for sim in sims:
        assert Lead.objects.filter(product=sim.product).count() == 5
        assert sim.simulator.stats()[sim.partner.slug]["posts"] == 5


def test_twenty_concurrent_referrals_of_one_person_answer_201_or_409_and_dedupe(
    source: TrafficSource,
    consent_text: object,
    simulator_factory: Callable[..., SimulatedPartner],
    settings: Any,
) -> None:
    sims = _capped_partners(simulator_factory, count=2, daily_cap=50)
    # A partner without a dedupe window gets every referral: its posts disclose this
    # person's data (the gate's disclosure row points at the subject) while the other
    # referrals of the same person are being taken in.
    every = simulator_factory(latency_ms=20)
    every.product.dedupe_days = 0
    every.product.save()
    # A ping-post partner: each referral opens an auction whose award (after the intake's
    # commit) decides the dedupe window again while other intakes of the person run.
    bidder = simulator_factory(latency_ms=20, bid_min="30.00", bid_max="30.00")
    bidder.product.delivery_mode = DeliveryMode.PING_POST
    bidder.product.ping_url = bidder.simulator.url_for(bidder.partner.slug, "ping")
    bidder.product.save()
    settings.AUCTION_BUDGET_MS = 3000
    clients = [_client(source) for _ in range(20)]
    payloads = [
        referral_payload(national_id="110101199003070000", source_reference=f"APP-{i % 15}")
        for i in range(20)
    ]

    responses = run_concurrently(*(_post(c, p) for c, p in zip(clients, payloads, strict=True)))

    statuses = [_status(r) for r in responses]
    assert set(statuses) <= {201, 409}, statuses
    assert statuses.count(201) == 15  # one per source reference; the 5 repeats are 409
    for response in responses:
        if response.status_code == 409:
            assert response.json()["error"]["code"] == "duplicate_source_reference"
    for sim in [*sims, bidder]:
        # The dedupe window: the person reaches each partner once, however many referrals.
        assert Lead.objects.filter(partner=sim.partner).count() == 1
        assert sim.simulator.stats()[sim.partner.slug]["posts"] == 1
    assert every.simulator.stats()[every.partner.slug]["posts"] == 15
