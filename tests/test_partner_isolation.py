"""No partner reaches another partner's objects: walk every ``/api/v1/partner/`` path with a
path parameter in the OpenAPI schema, call every method on it with a partner key and the
id of an object that belongs to ANOTHER partner, and expect a 404 in the one error shape
(and, for writes, nothing changed anywhere). A sandbox key must not reach live objects.

Every such path template must be registered in ``REGISTRY`` with a factory that creates
the foreign object: a new endpoint without an entry fails this test until it is added.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from django.apps import apps
from django.db import models
from rest_framework.test import APIClient

from partners.models import KeyMode, Partner, TrafficSource
from tests.conftest import partner_client
from tests.factories import PartnerFactory, ProductFactory, TrafficSourceFactory

pytestmark = pytest.mark.django_db

PREFIX = "/api/v1/partner/"
METHODS = ("get", "post", "put", "patch", "delete")
APPS = ("partners", "consent", "marketplace", "billing")


@dataclass
class World:
    me: Partner
    other: Partner
    source: TrafficSource
    cache: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Foreign:
    """An object of ``World.other`` (or, for the sandbox walk, a live one of ``World.me``)
    and the value of the path parameter that names it."""

    obj: models.Model
    param: str


Factory = Callable[[World, Partner], Foreign]


# --- Factories: one object of the given owner per kind -----------------------------------------


def make_lead(world: World, owner: Partner) -> Foreign:
    from marketplace.models import LeadStatus
    from tests.factories import referral_payload
    from tests.marketplace.conftest import create_referral, set_lead_status

    key = f"lead:{owner.pk}"
    if key not in world.cache:
        referral = create_referral(world.source, referral_payload())
        lead = set_lead_status(referral.leads.get(partner=owner), LeadStatus.DELIVERED)
        assert not lead.is_sandbox
        world.cache[key] = lead
    lead = world.cache[key]
    return Foreign(lead, str(lead.pk))


def make_invoice(world: World, owner: Partner) -> Foreign:
    from datetime import timedelta

    from django.utils import timezone

    from billing.invoicing import generate_invoices, issue_invoice
    from tests.billing.builders import LeadBuilder, current_period, post, report, schedule

    key = f"invoice:{owner.pk}"
    if key not in world.cache:  # one per owner and month
        schedule(owner)
        lead = LeadBuilder().lead(product=ProductFactory(partner=owner, name="Billed loan"))
        post(lead, report("accepted", timezone.now() - timedelta(hours=1)))
        made = generate_invoices(period=current_period())
        (draft,) = [i for i in made if i.partner_id == owner.pk]
        world.cache[key] = issue_invoice(invoice_id=draft.pk)
    invoice = world.cache[key]
    return Foreign(invoice, str(invoice.pk))


def make_invoice_document(world: World, owner: Partner) -> Foreign:
    """The owner's issued invoice (its month is invoiced once: reuse it)."""
    from billing.models import Invoice

    invoice = Invoice.objects.filter(partner=owner).exclude(number=None).first()
    return Foreign(invoice, str(invoice.pk)) if invoice else make_invoice(world, owner)


def make_product(world: World, owner: Partner) -> Foreign:
    product = owner.products.first() or ProductFactory(partner=owner)
    return Foreign(product, str(product.pk))


def make_change_request(world: World, owner: Partner) -> Foreign:
    from partners.products import propose_change

    change_request = propose_change(
        product=make_product(world, owner).obj,  # type: ignore[arg-type]
        changes={"dedupe_days": 9},
    )
    return Foreign(change_request, str(change_request.pk))


def make_webhook_message(world: World, owner: Partner) -> Foreign:
    from partners import outbound
    from partners.webhooks import create_endpoint

    if not owner.webhooks.exists():
        create_endpoint(partner=owner, url="http://127.0.0.1:9/hooks")
    (message,) = outbound.enqueue(
        partner_id=owner.pk,
        event_type="lead.delivered",
        data={"lead_id": str(uuid.uuid4())},
        dedupe_key=f"isolation:{uuid.uuid4()}",
    )
    # Failed: replaying it would visibly change it back to pending.
    type(message).objects.filter(pk=message.pk).update(status="failed", attempts=9)
    return Foreign(message, message.pk)


def make_consent_withdrawal(world: World, owner: Partner) -> Foreign:
    from consent import gate, grants
    from consent.models import DeletionRequest

    key = f"withdrawal:{owner.pk}"
    if key not in world.cache:  # one per owner: a grant is withdrawn once
        lead = make_lead(world, owner).obj
        grant = lead.referral.grant  # type: ignore[attr-defined]
        gate.disclose(
            grant_id=grant.id,
            partner_id=owner.pk,
            purpose="loan_referral",
            reference=f"lead:{lead.pk}",
        )
        withdrawal = grants.withdraw(grant_id=grant.id, channel="api")
        world.cache[key] = DeletionRequest.objects.get(withdrawal=withdrawal, partner=owner)
    request = world.cache[key]
    return Foreign(request, str(request.withdrawal_id))


# Every partner path template with a path parameter -> the factory of the object it names.
# Add yours here when you add an endpoint.
REGISTRY: dict[str, Factory] = {
    "/api/v1/partner/leads/{lead_id}": make_lead,
    "/api/v1/partner/leads/{lead_id}/events": make_lead,
    "/api/v1/partner/invoices/{id}": make_invoice,
    "/api/v1/partner/invoices/{id}/pdf": make_invoice_document,
    "/api/v1/partner/invoices/{id}/csv": make_invoice_document,
    "/api/v1/partner/invoices/{id}/html": make_invoice_document,
    "/api/v1/partner/products/{product_id}": make_product,
    "/api/v1/partner/products/{product_id}/change-requests": make_product,
    "/api/v1/partner/change-requests/{change_request_id}": make_change_request,
    "/api/v1/partner/webhook-messages/{message_id}": make_webhook_message,
    "/api/v1/partner/webhook-messages/{message_id}/replay": make_webhook_message,
    "/api/v1/partner/consent-withdrawals/{withdrawal_id}": make_consent_withdrawal,
    "/api/v1/partner/consent-withdrawals/{withdrawal_id}/ack": make_consent_withdrawal,
}
# Objects that are traffic (live or sandbox): a sandbox key must not reach live ones.
SANDBOX_SCOPED = {make_lead, make_webhook_message}


# --- The walk ----------------------------------------------------------------------------------


def partner_operations() -> list[tuple[str, str, dict[str, Any]]]:
    """(path template, method, operation) for every partner path with a path parameter."""
    response = APIClient().get("/api/schema/?format=json")
    assert response.status_code == 200
    schema = response.json()
    found = []
    for template, item in schema["paths"].items():
        if not template.startswith(PREFIX) or "{" not in template:
            continue
        for method in METHODS:
            if method in item:
                found.append((template, method, item[method]))
    assert found, "no partner paths with parameters in the schema?"
    return found


def request_body(operation: dict[str, Any]) -> dict[str, Any]:
    """The operation's documented example body (a valid request), else an empty one."""
    content = operation.get("requestBody", {}).get("content", {}).get("application/json", {})
    for example in content.get("examples", {}).values():
        return dict(example.get("value") or {})
    return {}


def call(client: APIClient, template: str, method: str, operation: dict[str, Any], param: str):
    url = re.sub(r"\{[^}]+\}", param, template)
    if method == "get":
        return client.get(url)
    return getattr(client, method)(url, request_body(operation), format="json")


def database_state(obj: models.Model) -> tuple[dict[str, int], dict[str, Any]]:
    """Row counts of every table of the apps, and the object's own column values."""
    counts = {
        model._meta.label: model._default_manager.count()
        for app in APPS
        for model in apps.get_app_config(app).get_models()
    }
    values = type(obj)._default_manager.filter(pk=obj.pk).values().get()
    return counts, values


def is_not_found(response: Any) -> bool:
    if response.status_code != 404:
        return False
    body = response.json()
    return (
        set(body) == {"error"}
        and body["error"]["code"] == "not_found"
        and set(body["error"]) == {"code", "message", "details"}
    )


@pytest.fixture
def world(consent_text: object) -> World:
    me, other = PartnerFactory(), PartnerFactory()
    for partner in (me, other):
        ProductFactory(partner=partner)
    return World(me=me, other=other, source=TrafficSourceFactory())


def test_every_partner_path_with_an_id_is_registered() -> None:
    templates = {template for template, _, _ in partner_operations()}
    missing = sorted(templates - set(REGISTRY))
    assert not missing, (
        "These partner API paths take an id but have no entry in REGISTRY of "
        f"{__file__}: {missing}. Add a factory that creates the object for another "
        "partner, so this test can prove the endpoint answers 404 to everyone else."
    )


def test_another_partners_object_is_a_404_on_every_partner_path_and_method(
    world: World,
) -> None:
    client = partner_client(world.me)
    failures = []
    walked = 0
    for template, method, operation in partner_operations():
        factory = REGISTRY.get(template)
        if factory is None:
            continue  # reported by test_every_partner_path_with_an_id_is_registered
        foreign = factory(world, world.other)
        before = database_state(foreign.obj)
        response = call(client, template, method, operation, foreign.param)
        walked += 1
        if not is_not_found(response):
            failures.append(
                f"{method.upper()} {template}: {response.status_code} {response.content[:200]!r}"
            )
        elif method != "get" and database_state(foreign.obj) != before:
            failures.append(f"{method.upper()} {template}: answered 404 but changed data")
    assert not failures, "\n".join(failures)
    assert walked > 0


def test_a_sandbox_key_does_not_reach_the_partners_own_live_traffic(world: World) -> None:
    sandbox = partner_client(world.me, KeyMode.SANDBOX)
    live = partner_client(world.me)
    failures = []
    for template, method, operation in partner_operations():
        factory = REGISTRY.get(template)
        if factory not in SANDBOX_SCOPED:
            continue
        own_live = factory(world, world.me)
        before = database_state(own_live.obj)
        response = call(sandbox, template, method, operation, own_live.param)
        if not is_not_found(response):
            failures.append(f"{method.upper()} {template}: {response.status_code}")
        elif method != "get" and database_state(own_live.obj) != before:
            failures.append(f"{method.upper()} {template}: answered 404 but changed data")
        if method == "get":  # the object is there for the live key: the 404 is the scoping
            assert call(live, template, method, operation, own_live.param).status_code == 200
    assert not failures, "\n".join(failures)
