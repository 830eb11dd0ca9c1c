"""Ping-post races that only a real database shows: run on PostgreSQL only."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
from django.utils import timezone

from marketplace import auctions, events, tasks
from marketplace.models import (
    AuctionStatus,
    Lead,
    LeadEvent,
    LeadStatus,
    PingAward,
    Referral,
)
from partners.models import DeliveryMode, TrafficSource
from tests.concurrency import run_concurrently
from tests.conftest import SimulatedPartner
from tests.factories import referral_payload
from tests.marketplace.conftest import create_referral

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def queued(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[str]]:
    """Published tasks are recorded, not run: the test drives the auction and the posts."""
    calls: dict[str, list[str]] = {"dispatches": [], "posts": []}
    for task, name in ((tasks.dispatch_referral, "dispatches"), (tasks.deliver_lead, "posts")):
        monkeypatch.setattr(
            task,
            "apply_async",
            lambda args, name=name, **options: calls[name].extend(args),
        )
    return calls


def ping_post(sim: SimulatedPartner) -> SimulatedPartner:
    sim.product.delivery_mode = DeliveryMode.PING_POST
    sim.product.ping_url = sim.simulator.url_for(sim.partner.slug, "ping")
    sim.product.ping_timeout_ms = 2000
    sim.product.save()
    return sim


def test_concurrent_fallbacks_fill_the_auction_without_overfilling(
    simulator_factory: Callable[..., SimulatedPartner],
    source: TrafficSource,
    consent_text: object,
    queued: dict[str, list[str]],
    settings: Any,
) -> None:
    settings.MAX_PARTNERS_PER_REFERRAL = 2
    settings.AUCTION_BUDGET_MS = 2000
    bids = ["50.00", "40.00", "30.00", "20.00"]
    sims = [ping_post(simulator_factory(bid_min=Decimal(b), bid_max=Decimal(b))) for b in bids]
    referral = create_referral(source, referral_payload())
    assert queued["dispatches"] == [str(referral.id)]
    assert auctions.run(auction_id=referral.auction.id).status == AuctionStatus.AWARDED
    first, second = (Lead.objects.get(referral=referral, partner=s.partner) for s in sims[:2])
    Lead.objects.filter(pk__in=[first.pk, second.pk]).update(status=LeadStatus.POST_REJECTED)

    results = run_concurrently(
        lambda: auctions.fall_back(lead_id=first.id),
        lambda: auctions.fall_back(lead_id=second.id),
    )

    assert not [r for r in results if isinstance(r, BaseException)], results
    awards = {
        row.partner_id: row.award
        for row in Referral.objects.get(pk=referral.pk).auction.pings.all()
    }
    assert awards == {
        sims[0].partner.id: PingAward.POST_FAILED,
        sims[1].partner.id: PingAward.POST_FAILED,
        sims[2].partner.id: PingAward.WON,
        sims[3].partner.id: PingAward.WON,
    }
    assert Lead.objects.filter(referral=referral).count() == 4


def test_concurrent_reversals_of_one_event_store_one(
    simulator_factory: Callable[..., SimulatedPartner],
    source: TrafficSource,
    consent_text: object,
    queued: dict[str, list[str]],
) -> None:
    sim = simulator_factory()
    referral = create_referral(source, referral_payload())
    lead = referral.leads.get()
    now = timezone.now()
    Lead.objects.filter(pk=lead.pk).update(status=LeadStatus.DELIVERED, delivered_at=now)
    events.record_event(
        lead_id=lead.id,
        partner_id=sim.partner.id,
        report=events.EventReport("acc", "accepted", now),
    )

    def reverse(event_id: str) -> Any:
        report = events.EventReport(event_id, "reversal", timezone.now(), reverses="acc")
        return events.record_event(lead_id=lead.id, partner_id=sim.partner.id, report=report)

    results = run_concurrently(lambda: reverse("rev-1"), lambda: reverse("rev-2"))

    refused = [r for r in results if isinstance(r, events.EventError)]
    assert len(refused) == 1 and refused[0].code == "already_reversed", results
    assert LeadEvent.objects.filter(type="reversal").count() == 1
    lead.refresh_from_db()
    assert lead.status == LeadStatus.DELIVERED
