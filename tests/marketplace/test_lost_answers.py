"""Partner outcomes are never refused for the platform's own loss: a partner that holds a
lead (the disclosure log says its data was sent) reports on it, and is billed, whatever
became of its answer to our post (lost to a reset, garbage, a worker killed mid-post)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from rest_framework.test import APIClient

from billing.models import Charge
from consent.gate import disclose
from consent.models import Disclosure
from marketplace import delivery
from marketplace.models import Lead, LeadStatus
from tests.conftest import SimulatedPartner, partner_client
from tests.factories import referral_payload
from tests.marketplace.conftest import api_post, error_body, report_event

pytestmark = pytest.mark.django_db


@pytest.fixture
def refer(source_client: APIClient, django_capture_on_commit_callbacks: Any) -> Callable[[], Lead]:
    """POST a referral and run its post (the on-commit task); its one lead."""

    def post() -> Lead:
        with django_capture_on_commit_callbacks(execute=True):
            response = api_post(source_client, referral_payload())
        assert response.status_code == 201, response.content
        return Lead.objects.get(referral_id=response.json()["id"])

    return post


def stats(sim: SimulatedPartner) -> dict[str, int]:
    return sim.simulator.stats()[sim.partner.slug]


@pytest.mark.parametrize("fault", ["garbage_rate", "reset_rate", "error_rate"])
def test_a_partner_whose_answer_was_lost_reports_its_outcomes_and_is_billed(
    simulator_factory: Callable[..., SimulatedPartner],
    refer: Callable[[], Lead],
    settings: Any,
    fault: str,
) -> None:
    settings.DELIVERY_MAX_RETRIES = 0
    # The lender accepts the post, then its answer is lost on the way back.
    sim = simulator_factory(**{fault: 1.0}, faults_after_decision=True)
    lead = refer()
    assert lead.status == LeadStatus.DELIVERY_FAILED
    assert stats(sim)["answers_lost"] == 1
    client = partner_client(sim.partner)

    accepted = report_event(client, lead, "accepted")

    assert accepted.status_code == 201, accepted.content
    lead.refresh_from_db()
    assert lead.status == LeadStatus.ACCEPTED
    # Delivered when the data left, as the disclosure log says (it is written before the post).
    (disclosure,) = Disclosure.objects.filter(reference=f"lead:{lead.id}")
    assert lead.delivered_at == disclosure.disclosed_at
    assert Charge.objects.filter(lead=lead).count() == 1  # the CPL
    approved = report_event(client, lead, "approved", amount="8000.00", apr="0.1800")
    funded = report_event(client, lead, "funded", principal="8000.00")
    assert (approved.status_code, funded.status_code) == (201, 201)
    assert Charge.objects.filter(lead=lead).count() == 3
    # The partner's word settled the lead: no later post of it.
    assert delivery.deliver(lead_id=lead.id).outcome == delivery.SKIPPED
    assert stats(sim)["posts"] == 1


def test_a_lead_whose_worker_died_after_sending_it_follows_the_partners_word(
    simulator_factory: Callable[..., SimulatedPartner],
    make_referral: Callable[..., Any],
) -> None:
    sim = simulator_factory()
    lead = make_referral().leads.get()
    # A worker claimed the lead, disclosed it (the log is committed before the post), sent
    # it and was killed before it recorded the answer: the lead is left delivering.
    claimed = delivery._claim(lead.id)
    assert isinstance(claimed, Lead) and claimed.referral.grant_id is not None
    disclose(
        grant_id=claimed.referral.grant_id,
        partner_id=lead.partner_id,
        purpose=delivery.REFERRAL_PURPOSE,
        reference=delivery.disclosure_reference(lead.id),
    )

    response = report_event(partner_client(sim.partner), lead, "accepted")

    assert response.status_code == 201, response.content
    lead.refresh_from_db()
    assert (lead.status, lead.claim_expires_at) == (LeadStatus.ACCEPTED, None)
    assert Charge.objects.filter(lead=lead).count() == 1
    # The takeover of the dead claim finds the lead settled: the partner is not posted twice.
    Lead.objects.filter(pk=lead.pk).update(claim_expires_at=None)
    assert delivery.deliver(lead_id=lead.id).outcome == delivery.SKIPPED
    assert stats(sim)["posts"] == 0


@pytest.mark.parametrize("status", [LeadStatus.MATCHED, LeadStatus.DELIVERY_FAILED])
def test_a_lead_whose_data_never_left_is_still_refused(
    simulator_factory: Callable[..., SimulatedPartner],
    make_referral: Callable[..., Any],
    status: str,
) -> None:
    sim = simulator_factory()
    lead = make_referral().leads.get()
    Lead.objects.filter(pk=lead.pk).update(status=status)  # e.g. the URL was refused

    response = report_event(partner_client(sim.partner), lead, "accepted")

    assert response.status_code == 422
    assert error_body(response)["code"] == "lead_not_delivered"
    lead.refresh_from_db()
    assert lead.status == status
