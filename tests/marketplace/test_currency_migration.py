"""Rows stored before amounts carried a currency get their referral's currency from the
migration: events with an amount or principal, leads with a bid or outcome amounts, and
bidding pings; rows without an amount stay without one."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

from marketplace import events
from marketplace.models import (
    AttemptOutcome,
    Auction,
    AuctionMode,
    Lead,
    LeadEvent,
    LeadStatus,
    PingAttempt,
    Referral,
)
from tests.factories import PartnerFactory, ProductFactory, referral_payload
from tests.marketplace.conftest import create_referral, set_lead_status

BEFORE = ("marketplace", "0006_grant_mode_from_referral")


def _migrate(targets: list[tuple[str, str]] | None = None) -> None:
    executor = MigrationExecutor(connection)
    executor.migrate(targets or executor.loader.graph.leaf_nodes())
    executor.loader.build_graph()


@pytest.mark.django_db(transaction=True)
def test_existing_amounts_get_their_referrals_currency(source: Any, consent_text: Any) -> None:
    partner = PartnerFactory()
    product = ProductFactory(partner=partner)
    referral = create_referral(source, referral_payload())
    bare = create_referral(source, referral_payload())
    lead = set_lead_status(referral.leads.get(partner=partner), LeadStatus.DELIVERED)
    now = timezone.now()
    for report in [
        events.EventReport("e-acc", "accepted", now),
        events.EventReport("e-app", "approved", now, amount=Decimal(8000), apr=Decimal("0.2")),
        events.EventReport("e-fund", "funded", now, principal=Decimal(7500)),
    ]:
        events.record_event(lead_id=lead.id, partner_id=partner.id, report=report)
    auction = Auction.objects.create(
        referral=referral, mode=AuctionMode.EXCLUSIVE, max_winners=1, budget_ms=750
    )
    Lead.objects.filter(pk=lead.pk).update(
        bid_amount=Decimal("41.00"), bid_currency="CNY", auction=auction
    )
    PingAttempt.objects.create(
        auction=auction,
        partner=partner,
        product=product,
        ping_id="ping_1",
        url="https://lender.example/ping",
        started_at=now - timedelta(seconds=1),
        latency_ms=12,
        outcome=AttemptOutcome.SUCCESS,
        bid=Decimal("41.00"),
        bid_currency="CNY",
        lead=lead,
    )
    # Not CNY, so the backfill visibly reads the referral rather than writing a constant.
    Referral.objects.filter(pk=referral.pk).update(currency="HKD")

    try:
        _migrate([BEFORE])  # drops the currency columns: the rows' state before the change
    finally:
        _migrate()  # and back, running the backfill

    currencies = dict(LeadEvent.objects.values_list("external_id", "currency"))
    assert currencies == {"e-acc": "", "e-app": "HKD", "e-fund": "HKD"}
    lead.refresh_from_db()
    assert (lead.bid_currency, lead.outcome_currency) == ("HKD", "HKD")
    assert PingAttempt.objects.get().bid_currency == "HKD"
    untouched = bare.leads.get(partner=partner)
    assert (untouched.bid_currency, untouched.outcome_currency) == ("", "")
