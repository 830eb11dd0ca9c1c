"""Direct post of a lead to its partner, against the real partner simulator on loopback:
signed, through the consent gate, every attempt recorded, failures retried and never lost."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from django.forms.models import model_to_dict
from rest_framework.test import APIClient

from consent import grants
from consent.models import Disclosure
from demo.lenders import SimulatedLender
from demo.server import PartnerSimulator
from marketplace import delivery
from marketplace.models import AttemptOutcome, DeliveryAttempt, Lead, LeadStatus, Referral
from partners.webhook_signing import create_endpoint
from tests.conftest import SimulatedPartner
from tests.factories import PartnerFactory, ProductFactory, referral_payload
from tests.marketplace.conftest import api_post, pii_strings

pytestmark = pytest.mark.django_db


@pytest.fixture
def refer(source_client: APIClient, django_capture_on_commit_callbacks: Any) -> Callable[..., Lead]:
    """POST a referral and run its delivery (the on-commit task), returning its one lead."""

    def post(payload: dict[str, Any] | None = None) -> Lead:
        with django_capture_on_commit_callbacks(execute=True):
            response = api_post(source_client, payload or referral_payload())
        assert response.status_code == 201, response.content
        (lead,) = Lead.objects.filter(referral_id=response.json()["id"])
        return lead

    return post


def attempts(lead: Lead) -> list[DeliveryAttempt]:
    return list(DeliveryAttempt.objects.filter(lead=lead).order_by("started_at", "id"))


def stats(sim: SimulatedPartner) -> dict[str, int]:
    return sim.simulator.stats()[sim.partner.slug]


class _RedirectHandler(BaseHTTPRequestHandler):
    hits: list[str]

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.hits.append(self.path)
        self.send_response(302)
        self.send_header("Location", "/landed")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def redirecting_server() -> Iterator[tuple[str, list[str]]]:
    """A partner endpoint that answers every POST with a 302; yields (url, paths hit)."""
    hits: list[str] = []
    handler = type("Handler", (_RedirectHandler,), {"hits": hits})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/post", hits
    server.shutdown()
    server.server_close()


# --- Success ----------------------------------------------------------------------------------


def test_successful_post_marks_lead_delivered_with_the_partners_reference(
    simulator_factory: Callable[..., SimulatedPartner], refer: Callable[..., Lead]
) -> None:
    sim = simulator_factory()

    lead = refer()

    lead.refresh_from_db()
    assert lead.status == LeadStatus.DELIVERED
    assert lead.delivered_at is not None
    decision = sim.simulator.decision(sim.partner.slug, str(lead.id))
    assert decision is not None and decision["decision"] == "accept"
    assert lead.partner_reference == decision["reference"]
    (attempt,) = attempts(lead)
    assert attempt.outcome == AttemptOutcome.SUCCESS
    assert attempt.http_status == 200
    assert attempt.reason == ""
    assert attempt.url == sim.product.post_url
    assert lead.delivery_attempts == 1


def test_partner_receives_a_signed_post_with_applicant_and_consent_evidence(
    simulator_factory: Callable[..., SimulatedPartner], refer: Callable[..., Lead]
) -> None:
    sim = simulator_factory()
    payload = referral_payload()

    lead = refer(payload)

    counters = stats(sim)
    assert counters["posts"] == 1
    assert counters["bad_signatures"] == 0  # the simulator verifies every signature
    (post,) = sim.simulator.received(sim.partner.slug)["posts"]
    assert post["type"] == "lead.post"
    assert post["lead_id"] == str(lead.id)
    assert post["mode"] == "live"
    assert post["loan"] == {
        "amount": "8000.00",
        "currency": "CNY",
        "term_months": 12,
        "purpose": "consumption",
    }
    for name, value in payload["applicant"].items():
        assert post["applicant"][name] == value
    grant = Referral.objects.get(pk=lead.referral_id).grant
    assert post["consent"] == {
        "receipt_id": str(grant.id),
        "text_version": grant.text.version,
        "text_sha256": grant.text.sha256,
    }
    assert len(post["consent"]["text_sha256"]) == 64


def test_the_post_is_a_logged_disclosure(
    simulator_factory: Callable[..., SimulatedPartner], refer: Callable[..., Lead]
) -> None:
    sim = simulator_factory()

    lead = refer()

    (disclosure,) = Disclosure.objects.all()
    assert disclosure.partner_id == sim.partner.id
    assert disclosure.reference == f"lead:{lead.id}"
    assert disclosure.purpose == delivery.REFERRAL_PURPOSE
    assert "national_id" in disclosure.fields


def test_personal_data_is_in_the_post_but_not_in_attempts_or_logs(
    simulator_factory: Callable[..., SimulatedPartner],
    refer: Callable[..., Lead],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    sim = simulator_factory()
    payload = referral_payload()

    lead = refer(payload)

    (post,) = sim.simulator.received(sim.partner.slug)["posts"]
    (attempt,) = attempts(lead)
    stored = " ".join(str(value) for value in model_to_dict(attempt).values())
    for secret in pii_strings(payload):
        assert secret in post["applicant"].values()
        assert secret not in stored
        assert secret not in caplog.text


def test_delivering_a_delivered_lead_again_is_a_no_op(
    simulator_factory: Callable[..., SimulatedPartner], refer: Callable[..., Lead]
) -> None:
    sim = simulator_factory()
    lead = refer()

    result = delivery.deliver(lead_id=lead.id)

    assert result.outcome == "skipped"
    assert result.retryable is False
    assert len(attempts(lead)) == 1
    assert Disclosure.objects.count() == 1
    assert stats(sim)["posts"] == 1
    lead.refresh_from_db()
    assert lead.status == LeadStatus.DELIVERED
    assert lead.delivery_attempts == 1


# --- Partner failures -------------------------------------------------------------------------


def test_http_500_is_an_error_retried_until_delivery_failed(
    simulator_factory: Callable[..., SimulatedPartner],
    refer: Callable[..., Lead],
    settings: Any,
) -> None:
    settings.DELIVERY_MAX_RETRIES = 2
    sim = simulator_factory(error_rate=1.0)

    lead = refer()

    lead.refresh_from_db()
    assert lead.status == LeadStatus.DELIVERY_FAILED
    recorded = attempts(lead)
    assert len(recorded) == 3  # the first try and two retries
    assert {(a.outcome, a.reason, a.http_status) for a in recorded} == {
        (AttemptOutcome.ERROR, "http 500", 500)
    }
    assert lead.delivery_attempts == 3
    assert stats(sim)["posts"] == 3
    # Every post that left carried personal data: each one is in the disclosure log.
    assert Disclosure.objects.filter(reference=f"lead:{lead.id}").count() == 3


def test_a_failed_lead_is_not_lost_and_is_delivered_when_the_partner_recovers(
    simulator_factory: Callable[..., SimulatedPartner],
    refer: Callable[..., Lead],
    settings: Any,
) -> None:
    settings.DELIVERY_MAX_RETRIES = 1
    sim = simulator_factory(error_rate=1.0)
    lead = refer()
    lead.refresh_from_db()
    assert lead.status == LeadStatus.DELIVERY_FAILED
    healthy = PartnerSimulator(
        [SimulatedLender(slug=sim.partner.slug, secret=sim.lender.secret)]
    ).start()
    try:
        sim.product.post_url = healthy.url_for(sim.partner.slug, "post")
        sim.product.save()

        result = delivery.deliver(lead_id=lead.id)

        assert result.outcome == AttemptOutcome.SUCCESS
        assert healthy.stats()[sim.partner.slug]["posts"] == 1
    finally:
        healthy.stop()
    lead.refresh_from_db()
    assert lead.status == LeadStatus.DELIVERED
    assert [a.outcome for a in attempts(lead)] == [
        AttemptOutcome.ERROR,
        AttemptOutcome.ERROR,
        AttemptOutcome.SUCCESS,
    ]


def test_garbage_answer_is_an_error_response_is_not_json(
    simulator_factory: Callable[..., SimulatedPartner],
    refer: Callable[..., Lead],
    settings: Any,
) -> None:
    settings.DELIVERY_MAX_RETRIES = 1
    sim = simulator_factory(garbage_rate=1.0)

    lead = refer()

    lead.refresh_from_db()
    assert lead.status == LeadStatus.DELIVERY_FAILED
    recorded = attempts(lead)
    assert len(recorded) == 2
    assert {(a.outcome, a.reason, a.http_status) for a in recorded} == {
        (AttemptOutcome.ERROR, "response is not JSON", 200)
    }
    assert stats(sim)["garbage_injected"] == 2


def test_partner_that_hangs_is_an_error_timed_out(
    simulator_factory: Callable[..., SimulatedPartner],
    refer: Callable[..., Lead],
    settings: Any,
) -> None:
    settings.DELIVERY_MAX_RETRIES = 1
    sim = simulator_factory(timeout_rate=1.0, hang_seconds=0.5)
    sim.product.post_timeout_ms = 200
    sim.product.save()

    lead = refer()

    lead.refresh_from_db()
    assert lead.status == LeadStatus.DELIVERY_FAILED
    recorded = attempts(lead)
    assert len(recorded) == 2
    assert {(a.outcome, a.reason, a.http_status) for a in recorded} == {
        (AttemptOutcome.ERROR, "timed out", None)
    }
    assert all(150 <= a.latency_ms < 500 for a in recorded)


def test_partner_rejecting_the_post_is_post_rejected_with_its_reason_and_not_retried(
    simulator_factory: Callable[..., SimulatedPartner],
    refer: Callable[..., Lead],
    settings: Any,
) -> None:
    settings.DELIVERY_MAX_RETRIES = 3
    sim = simulator_factory(accept_rate=0)

    lead = refer()

    lead.refresh_from_db()
    assert lead.status == LeadStatus.POST_REJECTED
    assert lead.delivered_at is None
    (attempt,) = attempts(lead)
    decision = sim.simulator.decision(sim.partner.slug, str(lead.id))
    assert decision is not None and decision["decision"] == "reject"
    assert attempt.outcome == AttemptOutcome.FAILURE
    assert attempt.reason == decision["reason"]
    assert stats(sim)["posts"] == 1


def test_redirect_is_not_followed_and_is_an_error(
    refer: Callable[..., Lead],
    redirecting_server: tuple[str, list[str]],
    settings: Any,
) -> None:
    settings.DELIVERY_MAX_RETRIES = 0
    url, hits = redirecting_server
    partner = PartnerFactory()
    create_endpoint(partner=partner, url="http://127.0.0.1:9/webhooks")
    ProductFactory(partner=partner, post_url=url)

    lead = refer()

    lead.refresh_from_db()
    assert lead.status == LeadStatus.DELIVERY_FAILED
    (attempt,) = attempts(lead)
    assert (attempt.outcome, attempt.reason, attempt.http_status) == (
        AttemptOutcome.ERROR,
        "redirect 302 not followed",
        302,
    )
    assert hits == ["/post"]  # never to /landed


def test_unreachable_partner_is_an_error_naming_the_transport_failure(
    refer: Callable[..., Lead], settings: Any
) -> None:
    settings.DELIVERY_MAX_RETRIES = 0
    partner = PartnerFactory()
    create_endpoint(partner=partner, url="http://127.0.0.1:9/webhooks")
    ProductFactory(partner=partner, post_url="http://127.0.0.1:9/post")  # discard port

    lead = refer()

    (attempt,) = attempts(lead)
    assert attempt.outcome == AttemptOutcome.ERROR
    assert attempt.reason == "ConnectError"
    lead.refresh_from_db()
    assert lead.status == LeadStatus.DELIVERY_FAILED


# --- Refused before any disclosure ------------------------------------------------------------


@pytest.mark.parametrize("scheme", ["https", "http"])
def test_private_partner_url_is_refused_before_any_disclosure(
    simulator_factory: Callable[..., SimulatedPartner],
    refer: Callable[..., Lead],
    settings: Any,
    scheme: str,
) -> None:
    settings.ALLOW_PRIVATE_PARTNER_URLS = False
    sim = simulator_factory()
    sim.product.post_url = sim.product.post_url.replace("http://", f"{scheme}://")
    sim.product.save()

    lead = refer()

    lead.refresh_from_db()
    assert lead.status == LeadStatus.DELIVERY_FAILED
    (attempt,) = attempts(lead)
    assert attempt.outcome == AttemptOutcome.ERROR
    assert ("non-public" if scheme == "https" else "https") in attempt.reason
    assert not Disclosure.objects.exists()
    assert stats(sim)["posts"] == 0


def test_partner_without_a_signing_secret_is_refused_before_any_disclosure(
    simulator_factory: Callable[..., SimulatedPartner], refer: Callable[..., Lead]
) -> None:
    sim = simulator_factory()
    sim.partner.webhooks.update(is_active=False)

    lead = refer()

    (attempt,) = attempts(lead)
    assert attempt.reason == "partner has no active signing secret"
    assert not Disclosure.objects.exists()
    assert stats(sim)["posts"] == 0


def test_consent_withdrawn_before_delivery_blocks_the_lead(
    simulator_factory: Callable[..., SimulatedPartner],
    source_client: APIClient,
    django_capture_on_commit_callbacks: Any,
) -> None:
    sim = simulator_factory()
    with django_capture_on_commit_callbacks() as callbacks:
        response = api_post(source_client, referral_payload())
    assert response.status_code == 201, response.content
    grants.withdraw(grant_id=response.json()["consent_receipt"]["receipt_id"], channel="api")

    # The dispatch task runs after the withdrawal; the posts it queues run at its commit.
    with django_capture_on_commit_callbacks(execute=True):
        for callback in callbacks:
            callback()

    lead = Lead.objects.get(referral_id=response.json()["id"])
    assert lead.status == LeadStatus.BLOCKED
    (attempt,) = attempts(lead)
    assert (attempt.outcome, attempt.reason) == (
        AttemptOutcome.FAILURE,
        "consent: consent_withdrawn",
    )
    assert not Disclosure.objects.exists()
    assert stats(sim)["posts"] == 0
    # A blocked lead stays blocked: delivering again does nothing.
    assert delivery.deliver(lead_id=lead.id).outcome == "skipped"
    assert stats(sim)["posts"] == 0


@pytest.mark.parametrize(
    ("post_url", "reason"),
    [
        pytest.param("http://127.0.0.1:9/po\x7fst", "InvalidURL", id="control-character"),
        pytest.param("http://" + "a" * 70 + ".example/post", "UnicodeError", id="label-too-long"),
        pytest.param("http://[::1/post", "partner URL is malformed", id="unclosed-ipv6"),
    ],
)
def test_partner_url_httpx_cannot_use_is_an_error_not_a_stuck_lead(
    refer: Callable[..., Lead], settings: Any, post_url: str, reason: str
) -> None:
    settings.DELIVERY_MAX_RETRIES = 0
    partner = PartnerFactory()
    create_endpoint(partner=partner, url="http://127.0.0.1:9/webhooks")
    ProductFactory(partner=partner, post_url=post_url)

    lead = refer()

    lead.refresh_from_db()
    assert lead.status == LeadStatus.DELIVERY_FAILED
    (attempt,) = attempts(lead)
    assert (attempt.outcome, attempt.reason) == (AttemptOutcome.ERROR, reason)
