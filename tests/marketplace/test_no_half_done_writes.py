"""A database error in the middle of a domain step leaves nothing half-done: the step's
rows are written together or not at all, and the work is found again (the claim's lease,
the sweeper)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.db import OperationalError

from marketplace import delivery, routing
from marketplace.models import DeliveryAttempt, Lead, LeadStatus, Referral
from partners.models import DeliveryMode
from tests.conftest import SimulatedPartner
from tests.factories import ProductFactory

pytestmark = pytest.mark.django_db


def _fail(*_args: Any, **_kwargs: Any) -> None:
    raise OperationalError("terminating connection due to administrator command")


def test_an_error_while_recording_a_posts_outcome_records_neither_half(
    simulator_factory: Callable[..., SimulatedPartner],
    make_referral: Callable[..., Referral],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    simulator_factory()
    lead = make_referral().leads.get()
    monkeypatch.setattr(delivery, "notify_delivered", _fail)

    with pytest.raises(OperationalError):
        delivery.deliver(lead_id=lead.id)

    # No attempt without its outcome: the lead is still claimed, and its lease will end.
    assert not DeliveryAttempt.objects.filter(lead=lead).exists()
    lead.refresh_from_db()
    assert lead.status == LeadStatus.DELIVERING
    assert lead.claim_expires_at is not None


@pytest.mark.django_db(transaction=True)  # route's own transaction, not the test's
def test_routing_makes_all_of_a_referrals_leads_and_its_auction_or_nothing(
    make_referral: Callable[..., Referral], monkeypatch: pytest.MonkeyPatch
) -> None:
    referral = make_referral()  # nothing matches yet
    assert referral.grant is not None and not referral.leads.exists()
    ProductFactory()  # direct post: its lead is made first...
    ProductFactory(delivery_mode=DeliveryMode.PING_POST, ping_url="http://127.0.0.1:9/ping")
    monkeypatch.setattr(routing, "open_auction", _fail)  # ...then opening the auction fails

    with pytest.raises(OperationalError):
        routing.route(referral=referral, grant=referral.grant)

    assert not Lead.objects.filter(referral=referral).exists()
