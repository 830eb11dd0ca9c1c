"""Withdrawal over real HTTP: the partner that got the post receives a signed
``consent.withdrawn`` webhook (checked by the simulator with the official standardwebhooks
library) and acknowledges the deletion through the partner API."""

from __future__ import annotations

import logging
from typing import Any

import httpx
import pytest

from consent.ledger import verify_ledger
from consent.models import DeletionRequest, LedgerEntry
from partners.keys import issue_api_key
from partners.models import MessageStatus, WebhookMessage
from tests.factories import TrafficSourceFactory, published_consent_text, referral_payload


def test_withdrawal_reaches_the_partner_and_its_ack_closes_the_request(
    live_server: Any, simulator_factory: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    published_consent_text()
    source_key = issue_api_key(source=TrafficSourceFactory()).plaintext
    sim = simulator_factory(api_base_url=live_server.url, accept_rate=1.0, approval_rate=0.0)
    payload = referral_payload()
    source_headers = {"Authorization": f"Bearer {source_key}"}
    with httpx.Client(base_url=live_server.url, timeout=30) as client:
        referral = client.post(
            "/api/v1/referrals", json=payload, headers={**source_headers, "Idempotency-Key": "w-1"}
        ).json()
        (lead,) = referral["leads"]
        receipt_id = referral["consent_receipt"]["receipt_id"]
        assert sim.simulator.wait_idle(timeout=20)
        assert sim.simulator.stats()[sim.partner.slug]["posts"] == 1

        response = client.post(
            f"/api/v1/consents/{receipt_id}/withdraw",
            json={"reason": "applicant asked"},
            headers={**source_headers, "Idempotency-Key": "withdraw-1"},
        )
        assert response.status_code == 200, response.text
        assert sim.simulator.wait_idle(timeout=20)

        stats = sim.simulator.stats()[sim.partner.slug]
        assert stats["bad_signatures"] == 0
        assert stats["withdrawals"] == 1
        assert stats["acks_sent"] == 1 and stats["acks_failed"] == 0
        assert sim.simulator.deletion_requested(sim.partner.slug) == frozenset({lead["id"]})

        request = DeletionRequest.objects.get()
        assert request.partner_id == sim.partner.id
        assert request.lead_ids == [lead["id"]]
        assert request.acknowledged_at is not None
        assert request.partner_acknowledged_at is not None
        message = WebhookMessage.objects.get(event_type="consent.withdrawn")
        assert message.status == MessageStatus.DELIVERED

        partner_view = client.get(
            f"/api/v1/partner/consent-withdrawals/{request.withdrawal_id}",
            headers={"Authorization": f"Bearer {sim.api_key}"},
        ).json()
        assert partner_view["status"] == "acknowledged"

    kinds = list(LedgerEntry.objects.values_list("kind", flat=True))
    assert kinds.count("deletion.requested") == 1
    assert kinds.count("deletion.acknowledged") == 1
    assert kinds.index("deletion.requested") < kinds.index("deletion.acknowledged")
    assert verify_ledger().ok
    secrets = [payload["applicant"][k] for k in ("full_name", "phone", "national_id", "address")]
    assert not [s for s in secrets if s in caplog.text]
