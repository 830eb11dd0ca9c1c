"""A withdrawal racing a distribution of the same lead (PostgreSQL row locks).

Either the post's disclosure committed first, and the partner then has a deletion request
for that lead; or the gate saw the withdrawal, and nothing was disclosed or posted. Never a
post after the withdrawal that no deletion request covers.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import pytest

from consent import grants
from consent.models import DeletionRequest, Disclosure
from marketplace import delivery
from partners.models import TrafficSource
from tests.concurrency import run_concurrently
from tests.conftest import SimulatedPartner
from tests.factories import referral_payload
from tests.marketplace.conftest import create_referral

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def test_withdrawal_racing_a_post_never_leaves_a_post_without_a_deletion_request(
    source: TrafficSource,
    consent_text: object,
    monkeypatch: pytest.MonkeyPatch,
    simulator_factory: Callable[..., SimulatedPartner],
) -> None:
    # Leads stay matched after intake: the race below does the delivering.
    monkeypatch.setattr("marketplace.tasks.deliver_lead", SimpleNamespace(delay=lambda _: None))
    sim = simulator_factory()
    for _round in range(8):
        referral = create_referral(source, referral_payload())
        lead = referral.leads.get()
        assert referral.grant_id is not None

        def withdraw(referral: Any = referral, delay: float = _round * 0.004) -> object:
            # Staggered starts: early rounds withdraw first, later ones land mid-delivery.
            time.sleep(delay)
            return grants.withdraw(grant_id=referral.grant_id, channel="api")

        results = run_concurrently(lambda lead=lead: delivery.deliver(lead_id=lead.id), withdraw)

        assert not [r for r in results if isinstance(r, BaseException)], results
        posted = [
            p
            for p in sim.simulator.received(sim.partner.slug)["posts"]
            if p["lead_id"] == str(lead.id)
        ]
        disclosed = Disclosure.objects.filter(reference=f"lead:{lead.id}").exists()
        request = DeletionRequest.objects.filter(
            withdrawal__grant_id=referral.grant_id, partner=sim.partner
        ).first()
        assert not posted or disclosed
        assert disclosed == (request is not None)
        if request is not None:
            assert request.lead_ids == [str(lead.id)]
