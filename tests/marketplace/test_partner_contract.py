"""The partner contract in the served OpenAPI document is what the platform really sends.

Real traffic to the partner simulator on loopback (signed HTTP, as partners receive it): a
ping-post auction (its pings and the winner's post), a direct post, and every webhook event
type (lead.delivered, consent.withdrawn after a withdrawal, invoice.issued when a month is
invoiced, credit_note.issued when the invoice is voided). Each body received is validated
with a JSON Schema validator against the schema the document gives it, with $refs resolved
in the document and every object closed, so a field the document does not name fails too.
The documented answers are what the platform's own parsers accept, and the signature
headers made for real message ids match the documented header schemas."""

from __future__ import annotations

import ast
import copy
import json
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from django.utils import timezone
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012
from rest_framework.test import APIClient

from billing.invoicing import invoice_month, void_invoice
from billing.periods import Period
from consent import grants
from marketplace import delivery, partner_contract, pings
from marketplace.models import AttemptOutcome, Lead, LeadStatus, Referral
from partners.models import DeliveryMode, WebhookMessage
from partners.months import month_of
from partners.tasks import dispatch_due_webhooks
from partners.webhook_signing import signed_headers
from tests.conftest import SimulatedPartner, partner_client
from tests.factories import referral_payload
from tests.marketplace.conftest import api_post, report_event

pytestmark = pytest.mark.django_db
ROOT = Path(__file__).resolve().parents[2]
DOCUMENT_URI = "urn:decline-marketplace:openapi"


@pytest.fixture(scope="module")
def document(django_db_blocker: Any) -> dict[str, Any]:
    with django_db_blocker.unblock():
        response = APIClient().get("/api/schema/?format=json")
    assert response.status_code == 200
    return dict(response.json())


def _closed(node: Any) -> Any:
    """The schema with every object that names its properties closed to others."""
    if isinstance(node, dict):
        node = {key: _closed(value) for key, value in node.items()}
        if "properties" in node and "additionalProperties" not in node:
            node["additionalProperties"] = False
        return node
    if isinstance(node, list):
        return [_closed(item) for item in node]
    return node


def _validator(document: dict[str, Any], schema: dict[str, Any]) -> Draft202012Validator:
    """A validator of ``schema`` whose refs resolve inside the (closed) document."""
    resource = Resource.from_contents(_closed(copy.deepcopy(document)), DRAFT202012)
    registry: Registry[Any] = Registry().with_resource(DOCUMENT_URI, resource)
    return Draft202012Validator(
        schema, registry=registry, format_checker=Draft202012Validator.FORMAT_CHECKER
    )


def _component(document: dict[str, Any], name: str) -> Draft202012Validator:
    return _validator(document, {"$ref": f"{DOCUMENT_URI}#/components/schemas/{name}"})


def _webhook_body_schema(document: dict[str, Any], webhook: str) -> Draft202012Validator:
    """The request body schema the document's ``webhooks`` section gives ``webhook``."""
    content = document["webhooks"][webhook]["post"]["requestBody"]["content"]
    return _validator(document, _rebased(content["application/json"]["schema"]))


def _rebased(schema: dict[str, Any]) -> dict[str, Any]:
    ref = schema["$ref"]
    assert ref.startswith("#/components/schemas/")
    return {"$ref": DOCUMENT_URI + ref}


def _errors(validator: Draft202012Validator, instance: Any) -> list[str]:
    return [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(instance)]


# --- The document -----------------------------------------------------------------------------


def test_the_document_is_openapi_3_1_with_every_webhook(document: dict[str, Any]) -> None:
    assert document["openapi"].startswith("3.1")
    assert set(document["webhooks"]) == {"lead.post", "lead.ping", *partner_contract.EVENT_SCHEMAS}
    for name, item in document["webhooks"].items():
        operation = item["post"]
        headers = {p["name"] for p in operation["parameters"] if p["in"] == "header"}
        assert headers == {"webhook-id", "webhook-timestamp", "webhook-signature"}, name
        examples = operation["requestBody"]["content"]["application/json"]["examples"]
        assert examples, name


def test_every_documented_example_validates_against_its_schema(document: dict[str, Any]) -> None:
    checked = 0
    for name, item in document["webhooks"].items():
        operation = item["post"]
        bodies = [operation["requestBody"]["content"]["application/json"]]
        bodies += [r["content"]["application/json"] for r in operation["responses"].values()
                   if "content" in r]  # fmt: skip
        for body in bodies:
            validator = _validator(document, _rebased(body["schema"]))
            for example_name, example in body["examples"].items():
                assert not _errors(validator, example["value"]), (name, example_name)
                checked += 1
    assert checked == len(partner_contract.EXAMPLES)  # each example, once


def test_every_event_type_the_code_sends_is_documented() -> None:
    """Every ``event_type=`` given to the webhook outbox in the apps' code (a literal or a
    module constant) has its schema in the document."""
    sent: set[str] = set()
    for app in ("partners", "consent", "marketplace", "billing"):
        for path in (ROOT / app).rglob("*.py"):
            if "migrations" in path.parts:
                continue
            tree = ast.parse(path.read_text())
            constants = {
                target.id: node.value.value
                for node in tree.body
                if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant)
                for target in node.targets
                if isinstance(target, ast.Name) and isinstance(node.value.value, str)
            }
            for call in ast.walk(tree):
                if not isinstance(call, ast.Call):
                    continue
                for keyword in call.keywords:
                    if keyword.arg != "event_type":
                        continue
                    value = keyword.value
                    if isinstance(value, ast.Constant) and isinstance(value.value, str):
                        sent.add(value.value)
                    elif isinstance(value, ast.Name) and value.id in constants:
                        sent.add(constants[value.id])
    assert sent == set(partner_contract.EVENT_SCHEMAS)


# --- What partners answer -------------------------------------------------------------------


def _answer(document: dict[str, Any], webhook: str) -> dict[str, Any]:
    return dict(
        document["webhooks"][webhook]["post"]["responses"]["200"]["content"]["application/json"]
    )


def test_the_documented_ping_answers_are_what_the_auction_accepts(
    document: dict[str, Any],
) -> None:
    outcomes = {}
    for name, example in _answer(document, "lead.ping")["examples"].items():
        response = httpx.Response(200, json=example["value"])
        outcomes[name] = pings.parse_ping_response(response, currency="CNY")
    assert outcomes["LeadPingBid"] == (AttemptOutcome.SUCCESS, "", Decimal("42.50"))
    assert outcomes["LeadPingAccept"][0] == AttemptOutcome.SUCCESS
    assert outcomes["LeadPingReject"] == (AttemptOutcome.FAILURE, "region_not_served", None)


def test_the_documented_post_answers_are_what_delivery_accepts(document: dict[str, Any]) -> None:
    outcomes = {
        name: delivery.parse_post_response(httpx.Response(200, json=example["value"]))
        for name, example in _answer(document, "lead.post")["examples"].items()
    }
    assert outcomes["LeadPostAccept"] == (AttemptOutcome.SUCCESS, "", "ACME-00A1B2C3D4")
    assert outcomes["LeadPostReject"] == (AttemptOutcome.FAILURE, "outside_credit_policy", "")


def test_a_bid_outside_the_documented_answer_is_refused_by_both(document: dict[str, Any]) -> None:
    validator = _validator(document, _rebased(_answer(document, "lead.ping")["schema"]))
    for bad in ({"decision": "bid", "bid": "-1"}, {"decision": "bid"}, {"decision": "maybe"}):
        assert _errors(validator, bad)
        outcome, _, _ = pings.parse_ping_response(httpx.Response(200, json=bad), currency="CNY")
        assert outcome == AttemptOutcome.ERROR


# --- What the platform sends -----------------------------------------------------------------


@pytest.fixture(autouse=True)
def _fast(settings: Any) -> None:
    settings.AUCTION_BUDGET_MS = 1500
    settings.DELIVERY_MAX_RETRIES = 0


def _refer(source_client: APIClient, capture: Any) -> Referral:
    with capture(execute=True):
        response = api_post(source_client, referral_payload())
    assert response.status_code == 201, response.content
    return Referral.objects.get(pk=response.json()["id"])


def _received(sim: SimulatedPartner) -> dict[str, list[dict[str, Any]]]:
    assert sim.simulator.wait_idle(timeout=20)
    counters = sim.simulator.stats()[sim.partner.slug]
    assert counters["bad_signatures"] == 0  # every body was signed (standardwebhooks)
    return sim.simulator.received(sim.partner.slug)


def test_what_the_platform_sends_validates_against_the_document(
    document: dict[str, Any],
    simulator_factory: Callable[..., SimulatedPartner],
    source_client: APIClient,
    django_capture_on_commit_callbacks: Any,
) -> None:
    direct = simulator_factory(accept_rate=1.0)
    bidder = simulator_factory(accept_rate=1.0, bid_min=Decimal("30.00"), bid_max=Decimal("30.00"))
    product = bidder.product
    product.delivery_mode = DeliveryMode.PING_POST
    product.ping_url = bidder.simulator.url_for(bidder.partner.slug, "ping")
    product.ping_timeout_ms = 1000
    product.save()
    direct.product.delivery_mode = DeliveryMode.DIRECT_POST
    direct.product.save()

    referral = _refer(source_client, django_capture_on_commit_callbacks)
    leads = {lead.partner_id: lead for lead in Lead.objects.filter(referral=referral)}
    assert {lead.status for lead in leads.values()} == {LeadStatus.DELIVERED}
    assert set(leads) == {direct.partner.id, bidder.partner.id}

    # Invoices need charges: both partners report their leads accepted (CPL).
    for sim in (direct, bidder):
        client = partner_client(sim.partner)
        assert report_event(client, leads[sim.partner.id], "accepted").status_code == 201
    with django_capture_on_commit_callbacks(execute=True):
        grants.withdraw(grant_id=referral.grant_id, channel="api")
    with django_capture_on_commit_callbacks(execute=True):
        run = invoice_month(period=Period(month_of(timezone.now())), issue=True)
    assert len(run.issued) == 2
    with django_capture_on_commit_callbacks(execute=True):
        void_invoice(invoice_id=run.issued[0].pk, reason="contract test: voided")
    # The test's transaction never commits, so the wake-up calls of the later events were
    # folded into the first, already run; beat's sweep sends them, as after any lost call.
    assert dispatch_due_webhooks.apply(throw=True).result == 5

    received = {sim.partner.slug: _received(sim) for sim in (direct, bidder)}
    (ping,) = received[bidder.partner.slug]["pings"]
    posts = [post for r in received.values() for post in r["posts"]]
    events = [event for r in received.values() for event in r["webhooks"]]
    assert len(posts) == 2

    problems = _errors(_webhook_body_schema(document, "lead.ping"), ping)
    for post in posts:
        problems += _errors(_webhook_body_schema(document, "lead.post"), post)
    for event in events:
        problems += _errors(_webhook_body_schema(document, event["type"]), event)
    assert not problems
    assert {event["type"] for event in events} == set(partner_contract.EVENT_SCHEMAS)

    # The signature headers, made by the platform's own signer for the real message ids.
    parameters = document["webhooks"]["lead.post"]["post"]["parameters"]
    header_schemas = {p["name"]: _validator(document, p["schema"]) for p in parameters}
    message_ids = [ping["ping_id"], *(f"lead_{post['lead_id']}" for post in posts)]
    message_ids += list(WebhookMessage.objects.values_list("id", flat=True))
    for message_id in message_ids:
        headers = signed_headers(["whsec_" + "A" * 32, "whsec_" + "B" * 32], b"{}", message_id)
        for name, validator in header_schemas.items():
            assert not _errors(validator, headers[name]), (name, headers[name])


def test_a_field_the_document_does_not_name_fails_the_check(document: dict[str, Any]) -> None:
    """The closed check is not vacuous: an extra field, or a missing one, is reported."""
    example = copy.deepcopy(partner_contract.EXAMPLES["LeadPost"])
    validator = _webhook_body_schema(document, "lead.post")
    assert not _errors(validator, example)
    assert _errors(validator, {**example, "score": 712})
    del example["consent"]
    assert _errors(validator, example)
    assert json.dumps(example)  # still plain JSON
