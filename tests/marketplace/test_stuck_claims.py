"""A post claim whose worker died is taken over when its lease ends, never forgotten: the
redelivered message waits for the lease instead of being acked, and the sweeper finds
leads that no message waits on any more (a claim past its lease, a lead never claimed)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from consent.models import Disclosure
from marketplace import auctions, delivery, sweeps
from marketplace.models import Auction, AuctionStatus, Lead, LeadStatus, Referral
from partners.models import DeliveryMode
from tests.conftest import SimulatedPartner

pytestmark = pytest.mark.django_db


def posts(sim: SimulatedPartner) -> int:
    return sim.simulator.stats()[sim.partner.slug]["posts"]


def died_mid_post(lead: Lead) -> Lead:
    """A worker claimed the lead and was killed before it recorded anything."""
    claimed = delivery._claim(lead.id)
    assert isinstance(claimed, Lead)
    lead.refresh_from_db()
    assert lead.status == LeadStatus.DELIVERING
    return lead


def lease_ends(lead: Lead) -> None:
    Lead.objects.filter(pk=lead.pk).update(claim_expires_at=timezone.now() - timedelta(seconds=1))


@pytest.fixture
def matched(
    simulator_factory: Callable[..., SimulatedPartner], make_referral: Callable[..., Referral]
) -> tuple[SimulatedPartner, Lead]:
    """A simulated partner and its matched lead, whose post nobody ran yet."""
    sim = simulator_factory()
    lead = make_referral().leads.get()
    assert lead.status == LeadStatus.MATCHED
    return sim, lead


def test_a_message_redelivered_within_a_dead_claims_lease_waits_for_it_then_takes_over(
    matched: tuple[SimulatedPartner, Lead],
) -> None:
    sim, lead = matched
    lead = died_mid_post(lead)
    assert lead.claim_expires_at is not None

    early = delivery.deliver(lead_id=lead.id)

    # Not acked and forgotten: retried, and not before the dead claim's lease ends.
    assert (early.outcome, early.retryable) == (delivery.IN_FLIGHT, True)
    assert early.retry_at == lead.claim_expires_at
    assert early.retry_in(at_least=timedelta(seconds=10)) > timedelta(seconds=25)
    assert posts(sim) == 0
    # A last run does not wait for ever: the sweeper has the lead once the lease ends.
    last = delivery.deliver(lead_id=lead.id, final_attempt=True)
    assert (last.outcome, last.retryable) == (delivery.IN_FLIGHT, False)
    lease_ends(lead)
    assert delivery.stale_claims() == [lead.id]

    late = delivery.deliver(lead_id=lead.id)

    assert late.outcome == "success"
    lead.refresh_from_db()
    assert (lead.status, lead.delivery_attempts, lead.claim_expires_at) == (
        LeadStatus.DELIVERED,
        2,
        None,
    )
    assert posts(sim) == 1


def test_the_sweeper_finds_claims_past_their_lease_and_leads_never_claimed(
    matched: tuple[SimulatedPartner, Lead], make_referral: Callable[..., Referral]
) -> None:
    _sim, dead = matched
    died_mid_post(dead)
    never = make_referral().leads.get()
    fresh = make_referral().leads.get()
    Lead.objects.filter(pk=never.pk).update(created_at=timezone.now() - timedelta(minutes=3))

    assert delivery.stale_claims() == [never.id]  # the dead claim's lease is still live

    lease_ends(dead)

    assert set(delivery.stale_claims()) == {dead.id, never.id}
    assert fresh.id not in delivery.stale_claims()


def test_the_sweep_task_posts_a_lead_whose_worker_died(
    matched: tuple[SimulatedPartner, Lead], django_capture_on_commit_callbacks: Any
) -> None:
    sim, lead = matched
    died_mid_post(lead)
    lease_ends(lead)

    with django_capture_on_commit_callbacks(execute=True):  # the outbox publishes
        assert sweeps.sweep_stuck_work() == {"leads": 1, "auctions": 0, "catalogue_changes": 0}

    lead.refresh_from_db()
    assert lead.status == LeadStatus.DELIVERED
    assert posts(sim) == 1
    # The dead worker never reached the gate: the one disclosure is the post that happened.
    assert Disclosure.objects.filter(partner_id=lead.partner_id).count() == 1


def test_a_worker_that_outlived_its_lease_cannot_overwrite_the_takeover(
    matched: tuple[SimulatedPartner, Lead],
) -> None:
    _sim, lead = matched
    stale = delivery._claim(lead.id)
    assert isinstance(stale, Lead)
    lease_ends(lead)
    assert isinstance(delivery._claim(lead.id), Lead)  # taken over: attempt 2

    # The first worker wakes up and records a timeout under its old claim.
    delivery._finish(stale, "http://x", 0.0, None, "error", "timed out", LeadStatus.DELIVERY_FAILED)

    lead.refresh_from_db()
    assert (lead.status, lead.delivery_attempts) == (LeadStatus.DELIVERING, 2)
    assert lead.claim_expires_at is not None


def test_an_auction_whose_message_was_lost_is_swept_and_run(
    simulator_factory: Callable[..., SimulatedPartner],
    make_referral: Callable[..., Referral],
    settings: Any,
    django_capture_on_commit_callbacks: Any,
) -> None:
    settings.AUCTION_BUDGET_MS = 1500
    sim = simulator_factory(bid_min="30.00", bid_max="30.00")
    product = sim.product
    product.delivery_mode = DeliveryMode.PING_POST
    product.ping_url = sim.simulator.url_for(sim.partner.slug, "ping")
    product.save()
    auction = make_referral().auction
    assert auctions.stale_pending() == []
    Auction.objects.filter(pk=auction.pk).update(created_at=timezone.now() - timedelta(minutes=2))

    with django_capture_on_commit_callbacks(execute=True):  # the outbox, the winner's post
        assert sweeps.sweep_stuck_work() == {"leads": 0, "auctions": 1, "catalogue_changes": 0}

    auction.refresh_from_db()
    assert auction.status == AuctionStatus.AWARDED
    assert Lead.objects.get(auction=auction).status == LeadStatus.DELIVERED
