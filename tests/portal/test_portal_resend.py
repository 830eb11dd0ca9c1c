"""Partner staff send a failed lead post again from the portal, against the real partner
simulator on loopback: through the outbox and the delivery path (signed, under a claim,
through the consent gate), never a lead the partner already holds (a 2xx recorded), never
one whose consent was withdrawn (the gate blocks it: nothing is sent), and never another
partner's lead (a 404)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse
from rest_framework.test import APIClient

from consent import grants
from consent.models import Disclosure
from demo.lenders import SimulatedLender
from demo.server import PartnerSimulator
from marketplace.models import AttemptOutcome, Lead, LeadStatus, OutboxMessage
from partners.permissions import grant_partner_access
from portal.models import PortalAction, PortalActionKind
from tests.conftest import SimulatedPartner
from tests.factories import PartnerFactory, referral_payload
from tests.marketplace.conftest import api_post
from tests.portal.conftest import client_for

pytestmark = pytest.mark.django_db


@pytest.fixture
def failed(
    simulator_factory: Callable[..., SimulatedPartner],
    source_client: APIClient,
    django_capture_on_commit_callbacks: Any,
    settings: Any,
) -> Callable[..., tuple[SimulatedPartner, Lead]]:
    """A partner whose endpoint answers as ``behaviour`` says, and its one lead, posted
    until its retries were spent."""

    def make(**behaviour: object) -> tuple[SimulatedPartner, Lead]:
        settings.DELIVERY_MAX_RETRIES = 1
        sim = simulator_factory(**behaviour)
        with django_capture_on_commit_callbacks(execute=True):
            response = api_post(source_client, referral_payload())
        assert response.status_code == 201, response.content
        (lead,) = Lead.objects.filter(referral_id=response.json()["id"])
        assert lead.status == LeadStatus.DELIVERY_FAILED
        return sim, lead

    return make


@pytest.fixture
def healthy() -> Iterator[Callable[[SimulatedPartner], PartnerSimulator]]:
    """The partner's endpoint fixed: a new simulator that accepts, the product posting to it."""
    started: list[PartnerSimulator] = []

    def fix(sim: SimulatedPartner) -> PartnerSimulator:
        server = PartnerSimulator(
            [SimulatedLender(slug=sim.partner.slug, secret=sim.lender.secret)]
        ).start()
        started.append(server)
        sim.product.post_url = server.url_for(sim.partner.slug, "post")
        sim.product.save()
        return server

    yield fix
    for server in started:
        server.stop()


def _staff(partner: Any, name: str = "desk", *, manage: bool = True) -> Any:
    user = get_user_model().objects.create_user(name)
    grant_partner_access(user=user, partner=partner, manage=manage)
    return user


def _resend(client: Any, lead: Lead, capture: Any) -> Any:
    with capture(execute=True):
        return client.post(reverse("portal:lead_resend", args=[lead.pk]))


def test_a_failed_post_is_sent_again_through_the_gate_once_the_partner_is_fixed(
    failed: Any, healthy: Any, django_capture_on_commit_callbacks: Any
) -> None:
    sim, lead = failed(error_rate=1.0)
    client = client_for(_staff(sim.partner), partner=sim.partner)
    page = client.get(reverse("portal:lead_detail", args=[lead.pk])).content.decode()
    assert 'id="resend-form"' in page
    deliveries = client.get(reverse("portal:deliveries")).content.decode()
    assert "resend-link" in deliveries
    disclosures = Disclosure.objects.filter(reference=f"lead:{lead.pk}").count()
    server = healthy(sim)

    response = _resend(client, lead, django_capture_on_commit_callbacks)

    assert response.status_code == 302
    lead.refresh_from_db()
    assert lead.status == LeadStatus.DELIVERED
    assert server.stats()[sim.partner.slug]["posts"] == 1
    assert server.stats()[sim.partner.slug]["bad_signatures"] == 0
    (post,) = server.received(sim.partner.slug)["posts"]
    assert post["lead_id"] == str(lead.pk)
    outcomes = [a.outcome for a in lead.attempts.order_by("started_at", "id")]
    assert outcomes == [AttemptOutcome.ERROR, AttemptOutcome.ERROR, AttemptOutcome.SUCCESS]
    # The post carried the applicant's data: one more entry in the disclosure log.
    assert Disclosure.objects.filter(reference=f"lead:{lead.pk}").count() == disclosures + 1
    assert PortalAction.objects.filter(
        partner=sim.partner, kind=PortalActionKind.LEAD_RESENT, target=str(lead.pk)
    ).exists()

    # Delivered now: the partner holds it, and it is not posted again.
    again = _resend(client, lead, django_capture_on_commit_callbacks)
    assert again.status_code == 409
    assert server.stats()[sim.partner.slug]["posts"] == 1


def test_a_lead_whose_consent_was_withdrawn_is_not_posted_again(
    failed: Any, healthy: Any, django_capture_on_commit_callbacks: Any
) -> None:
    sim, lead = failed(error_rate=1.0)
    grants.withdraw(grant_id=lead.referral.grant_id, channel="admin")
    disclosures = Disclosure.objects.filter(reference=f"lead:{lead.pk}").count()
    server = healthy(sim)
    client = client_for(_staff(sim.partner), partner=sim.partner)

    _resend(client, lead, django_capture_on_commit_callbacks)

    lead.refresh_from_db()
    assert lead.status == LeadStatus.BLOCKED  # the consent gate decided
    assert server.stats()[sim.partner.slug]["posts"] == 0
    assert Disclosure.objects.filter(reference=f"lead:{lead.pk}").count() == disclosures
    assert lead.attempts.order_by("-started_at", "-id").first().reason.startswith("consent:")
    refused = _resend(client, lead, django_capture_on_commit_callbacks)
    assert refused.status_code == 409


def test_a_lead_answered_with_a_2xx_is_never_posted_again(
    failed: Any, healthy: Any, django_capture_on_commit_callbacks: Any
) -> None:
    sim, lead = failed(garbage_rate=1.0)  # 200 with a body we cannot read: failed for us
    assert lead.attempts.filter(http_status=200).exists()
    server = healthy(sim)
    client = client_for(_staff(sim.partner), partner=sim.partner)
    page = client.get(reverse("portal:lead_detail", args=[lead.pk])).content.decode()
    assert 'id="resend-form"' not in page and 'id="resend-refusal"' in page

    response = _resend(client, lead, django_capture_on_commit_callbacks)

    assert response.status_code == 409
    assert "2xx" in response.content.decode()
    assert server.stats()[sim.partner.slug]["posts"] == 0
    assert not OutboxMessage.objects.filter(args=[str(lead.pk)], done_at__isnull=True).exists()


def test_another_partners_lead_is_a_404_and_view_access_cannot_resend(
    failed: Any, healthy: Any, django_capture_on_commit_callbacks: Any
) -> None:
    sim, lead = failed(error_rate=1.0)
    server = healthy(sim)
    other = PartnerFactory(name="Other Lender")
    outsider = client_for(_staff(other, "outsider"), partner=other)
    viewer = client_for(_staff(sim.partner, "viewer", manage=False), partner=sim.partner)

    assert _resend(outsider, lead, django_capture_on_commit_callbacks).status_code == 404
    assert _resend(viewer, lead, django_capture_on_commit_callbacks).status_code == 403
    lead.refresh_from_db()
    assert lead.status == LeadStatus.DELIVERY_FAILED
    assert server.stats()[sim.partner.slug]["posts"] == 0
    assert not PortalAction.objects.filter(kind=PortalActionKind.LEAD_RESENT).exists()
