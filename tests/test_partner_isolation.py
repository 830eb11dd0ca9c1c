"""No API key reaches an object of another tenant or of the other key mode.

Every object a key can reach belongs to one tenant (a partner or a traffic source) and one
mode (sandbox or live traffic). This walks EVERY path and method of the OpenAPI schema with
every key of a small world (partners A and B, sources S and T, each with a live and a
sandbox key) against objects of partner A and source S in both modes:

- a path that names an object (``{id}``) must answer the object's owner in the object's
  mode (checked: the object is there), and everyone else with a 404 in the one error shape
  (403 when the key is of the wrong kind, or when a sandbox key tries to change
  configuration), writing nothing anywhere;
- a list must show its owner's objects and nothing of another tenant or the other mode;
- every other path is registered with what it shows (the caller itself, or global data).

Every (method, path) of the schema must be registered in ``REGISTRY``: a new endpoint fails
this test until it is placed there with the objects it reaches.
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
from django.test import override_settings
from rest_framework.test import APIClient

from partners.models import KeyMode, Partner, TrafficSource
from tests.conftest import partner_client
from tests.factories import PartnerFactory, ProductFactory, TrafficSourceFactory

pytestmark = pytest.mark.django_db

METHODS = ("get", "post", "put", "patch", "delete")
APPS = ("partners", "consent", "marketplace", "billing")
MODES = (KeyMode.LIVE, KeyMode.SANDBOX)

# A caller is (tenant name, key mode); tenants: partners "A", "B", sources "S", "T".
Caller = tuple[str, str]
PARTNERS, SOURCES = ("A", "B"), ("S", "T")
CALLERS: tuple[Caller, ...] = tuple((t, m) for t in (*PARTNERS, *SOURCES) for m in MODES)


def other(mode: str) -> str:
    return KeyMode.SANDBOX if mode == KeyMode.LIVE else KeyMode.LIVE


@dataclass(frozen=True)
class Thing:
    """One object of the world: what it is, how a path names it, whom it belongs to."""

    kind: str
    obj: models.Model
    param: str
    owner: str  # "A" or "S"
    mode: str
    # Callers besides (owner, mode) that may read it (a ledger entry about S's consent
    # that names partner A is A's and S's).
    also_readers: frozenset[Caller] = frozenset()

    def readers(self) -> set[Caller]:
        return {(self.owner, self.mode), *self.also_readers}


@dataclass
class World:
    partners: dict[str, Partner]
    sources: dict[str, TrafficSource]
    clients: dict[Caller, APIClient] = field(default_factory=dict)
    things: dict[str, list[Thing]] = field(default_factory=dict)

    def add(self, thing: Thing) -> None:
        self.things.setdefault(thing.kind, []).append(thing)


# --- The world: objects of partner A and source S in both modes ---------------------------------


def source_client(source: TrafficSource, mode: str) -> APIClient:
    from partners.keys import issue_api_key

    client = APIClient()
    key = issue_api_key(source=source, mode=mode).plaintext
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    return client


def _referral(world: World, mode: str) -> Any:
    from tests.factories import referral_payload
    from tests.marketplace.conftest import create_referral

    referral = create_referral(
        world.sources["S"], referral_payload(), is_sandbox=mode == KeyMode.SANDBOX
    )
    assert referral.leads.filter(partner=world.partners["A"]).exists()
    return referral


def add_traffic(world: World, mode: str) -> None:
    """A referral of S with its consent and A's lead; a webhook message to A; a withdrawn
    consent of S whose data A received (a deletion request to A); their ledger entries."""
    from consent import gate, grants, sequencer
    from consent.models import DeletionRequest, LedgerEntry
    from marketplace.models import LeadStatus
    from partners import webhook_delivery
    from tests.marketplace.conftest import set_lead_status

    a = world.partners["A"]
    referral = _referral(world, mode)
    world.add(Thing("referral", referral, str(referral.pk), "S", mode))
    world.add(Thing("grant", referral.grant, str(referral.grant_id), "S", mode))
    lead = set_lead_status(referral.leads.get(partner=a), LeadStatus.DELIVERED)
    assert lead.is_sandbox == (mode == KeyMode.SANDBOX)
    world.add(Thing("lead", lead, str(lead.pk), "A", mode))

    (message,) = webhook_delivery.enqueue(
        partner_id=a.pk,
        event_type="lead.delivered",
        data={"lead_id": str(lead.pk)},
        dedupe_key=f"isolation:{uuid.uuid4()}",
        is_sandbox=mode == KeyMode.SANDBOX,
    )
    # Failed: replaying it would visibly change it back to pending.
    type(message).objects.filter(pk=message.pk).update(status="failed", attempts=9)
    world.add(Thing("webhook_message", message, message.pk, "A", mode))

    withdrawn = _referral(world, mode)
    withdrawn_lead = withdrawn.leads.get(partner=a)
    gate.disclose(
        grant_id=withdrawn.grant_id,
        partner_id=a.pk,
        purpose="loan_referral",
        reference=f"lead:{withdrawn_lead.pk}",
    )
    withdrawal = grants.withdraw(grant_id=withdrawn.grant_id, channel="api")
    request = DeletionRequest.objects.get(withdrawal=withdrawal, partner=a)
    world.add(Thing("deletion_request", request, str(request.withdrawal_id), "A", mode))

    sequencer.sequence_pending()  # entries are appended pending; the API reads them by seq
    granted = LedgerEntry.objects.get(
        kind="consent.granted", canonical__contains=str(referral.grant_id)
    )
    world.add(Thing("ledger_entry", granted, str(granted.seq), "S", mode))
    requested = LedgerEntry.objects.get(
        kind="deletion.requested", canonical__contains=str(request.id)
    )
    world.add(
        Thing(
            "ledger_entry",
            requested,
            str(requested.seq),
            "A",
            mode,
            also_readers=frozenset({("S", mode)}),
        )
    )


def add_configuration(world: World) -> None:
    """A's product and a change request to it: configuration, the same in both modes."""
    from partners.products import propose_change

    a = world.partners["A"]
    product = a.products.first()
    world.add(Thing("product", product, str(product.pk), "A", KeyMode.LIVE))
    change_request = propose_change(product=product, changes={"dedupe_days": 9})
    world.add(Thing("change_request", change_request, str(change_request.pk), "A", KeyMode.LIVE))


def add_invoice(world: World) -> None:
    """A's issued invoice: billing exists for live traffic only."""
    from datetime import timedelta

    from django.utils import timezone

    from billing.invoicing import generate_invoices, issue_invoice
    from tests.billing.builders import LeadBuilder, current_period, post, report, schedule

    a = world.partners["A"]
    schedule(a)
    lead = LeadBuilder().lead(product=ProductFactory(partner=a, name="Billed loan"))
    post(lead, report("accepted", timezone.now() - timedelta(hours=1)))
    (draft,) = [i for i in generate_invoices(period=current_period()) if i.partner_id == a.pk]
    invoice = issue_invoice(invoice_id=draft.pk)
    world.add(Thing("invoice", invoice, str(invoice.pk), "A", KeyMode.LIVE))


@pytest.fixture
def world(consent_text: object) -> World:
    from consent import ledger
    from partners.webhook_signing import create_endpoint

    partners = {name: PartnerFactory() for name in PARTNERS}
    for partner in partners.values():
        ProductFactory(partner=partner)
        create_endpoint(partner=partner, url="http://127.0.0.1:9/hooks")
    world = World(partners=partners, sources={name: TrafficSourceFactory() for name in SOURCES})
    for name, mode in CALLERS:
        if name in PARTNERS:
            world.clients[(name, mode)] = partner_client(partners[name], mode)
        else:
            world.clients[(name, mode)] = source_client(world.sources[name], mode)
    add_configuration(world)
    add_invoice(world)
    for mode in MODES:
        add_traffic(world, mode)
    ledger.make_checkpoint()  # ledger entries are served once a checkpoint covers them
    return world


# --- What each path reaches ----------------------------------------------------------------------


@dataclass(frozen=True)
class ById:
    """A path naming one object of ``kind``. ``key`` is the key kind it needs ("partner",
    "source" or "any"). ``configuration``: readable with both modes of the owner's keys,
    changeable only with a live key (403 ``live_key_required`` otherwise)."""

    kind: str
    key: str
    configuration: bool = False
    # A body the owner could send with success (so a refusal is the scoping, not the body).
    body: Callable[[], dict[str, Any]] | None = None


def valid_event() -> dict[str, Any]:
    from django.utils import timezone

    return {"event_id": f"e-{uuid.uuid4()}", "type": "accepted", "occurred_at": timezone.now()}


@dataclass(frozen=True)
class Listing:
    """A list of the caller's objects of ``kind``; each row named by ``row_id`` inside
    ``rows`` (None: the paginated ``results``). ``sandbox_error``: the code a sandbox key
    gets instead (a 404), for what exists only for live traffic."""

    kind: str
    row_id: str
    rows: str | None = None
    configuration: bool = False
    sandbox_error: str | None = None


@dataclass(frozen=True)
class Itself:
    """The calling partner's own profile."""


@dataclass(frozen=True)
class OwnList:
    """The calling partner's own suppression list in its key's mode: no path names another
    partner's or mode's list (tests/partners/test_suppression.py proves the lists apart);
    here, source keys are refused and every partner key reads its own."""


@dataclass(frozen=True)
class Intake:
    """Creates a referral of the calling source, in the calling key's mode."""


@dataclass(frozen=True)
class Global:
    """Holds no tenant's data: ledger sizes, hashes, signatures and the public key."""


Spec = ById | Listing | Itself | OwnList | Intake | Global

# Every (method, path template) of the schema. Add yours here when you add an endpoint.
REGISTRY: dict[tuple[str, str], Spec] = {
    ("post", "/api/v1/referrals"): Intake(),
    ("get", "/api/v1/referrals/{id}"): ById("referral", "source"),
    ("get", "/api/v1/consents/{receipt_id}"): ById("grant", "source"),
    ("post", "/api/v1/consents/{receipt_id}/withdraw"): ById("grant", "source", body=dict),
    ("get", "/api/v1/ledger/entries/{seq}"): ById("ledger_entry", "any"),
    ("get", "/api/v1/ledger/checkpoints"): Global(),
    ("get", "/api/v1/ledger/checkpoints/latest"): Global(),
    ("get", "/api/v1/ledger/consistency"): Global(),
    ("get", "/api/v1/ledger/public-key"): Global(),
    ("get", "/api/v1/partner/me"): Itself(),
    ("get", "/api/v1/partner/leads"): Listing("lead", "id"),
    ("get", "/api/v1/partner/leads/{lead_id}"): ById("lead", "partner"),
    ("post", "/api/v1/partner/leads/{lead_id}/events"): ById("lead", "partner", body=valid_event),
    ("get", "/api/v1/partner/invoices"): Listing("invoice", "id"),
    ("get", "/api/v1/partner/invoices/{id}"): ById("invoice", "partner"),
    ("get", "/api/v1/partner/invoices/{id}/pdf"): ById("invoice", "partner"),
    ("get", "/api/v1/partner/invoices/{id}/csv"): ById("invoice", "partner"),
    ("get", "/api/v1/partner/invoices/{id}/html"): ById("invoice", "partner"),
    ("get", "/api/v1/partner/statement"): Listing(
        "invoice", "invoice_id", rows="items", sandbox_error="no_sandbox_billing"
    ),
    ("get", "/api/v1/partner/products"): Listing("product", "id", configuration=True),
    ("get", "/api/v1/partner/products/{product_id}"): ById(
        "product", "partner", configuration=True
    ),
    ("post", "/api/v1/partner/products/{product_id}/change-requests"): ById(
        "product", "partner", configuration=True, body=lambda: {"dedupe_days": 11}
    ),
    ("get", "/api/v1/partner/change-requests"): Listing("change_request", "id", configuration=True),
    ("get", "/api/v1/partner/change-requests/{change_request_id}"): ById(
        "change_request", "partner", configuration=True
    ),
    ("get", "/api/v1/partner/webhook-messages"): Listing("webhook_message", "id"),
    ("get", "/api/v1/partner/webhook-messages/{message_id}"): ById("webhook_message", "partner"),
    ("post", "/api/v1/partner/webhook-messages/{message_id}/replay"): ById(
        "webhook_message", "partner"
    ),
    ("get", "/api/v1/partner/consent-withdrawals"): Listing("deletion_request", "withdrawal_id"),
    ("get", "/api/v1/partner/consent-withdrawals/{withdrawal_id}"): ById(
        "deletion_request", "partner"
    ),
    ("post", "/api/v1/partner/consent-withdrawals/{withdrawal_id}/ack"): ById(
        "deletion_request", "partner", body=dict
    ),
    ("get", "/api/v1/partner/suppression"): OwnList(),
    ("post", "/api/v1/partner/suppression/key"): OwnList(),
    ("post", "/api/v1/partner/suppression/hashes"): OwnList(),
    ("delete", "/api/v1/partner/suppression/hashes"): OwnList(),
}


# --- Helpers -------------------------------------------------------------------------------------


def schema_operations() -> list[tuple[str, str, dict[str, Any]]]:
    """(method, path template, operation) for every operation in the OpenAPI schema."""
    response = APIClient().get("/api/schema/?format=json")
    assert response.status_code == 200
    found = [
        (method, template, item[method])
        for template, item in response.json()["paths"].items()
        for method in METHODS
        if method in item
    ]
    assert len(found) >= len(REGISTRY) // 2, "the schema lost most of its paths?"
    return found


def request_body(operation: dict[str, Any]) -> dict[str, Any]:
    """The operation's documented example body (a valid request), else an empty one."""
    content = operation.get("requestBody", {}).get("content", {}).get("application/json", {})
    for example in content.get("examples", {}).values():
        return dict(example.get("value") or {})
    return {}


def call(
    client: APIClient,
    method: str,
    template: str,
    operation: dict[str, Any],
    param: str,
    body: dict[str, Any] | None = None,
):
    url = re.sub(r"\{[^}]+\}", param, template)
    if method == "get":
        return client.get(url)
    body = request_body(operation) if body is None else body
    return getattr(client, method)(url, body, format="json")


def database_state(obj: models.Model) -> tuple[dict[str, int], dict[str, Any]]:
    """Row counts of every table of the apps, and the object's own column values."""
    counts = {
        model._meta.label: model._default_manager.count()
        for app in APPS
        for model in apps.get_app_config(app).get_models()
    }
    values = type(obj)._default_manager.filter(pk=obj.pk).values().get()
    return counts, values


def error_code(response: Any) -> str | None:
    """The code of a response in the one error shape, else None."""
    if getattr(response, "streaming", False):
        return None
    try:
        body = response.json()
    except (ValueError, TypeError):
        return None
    if set(body) != {"error"} or set(body["error"]) != {"code", "message", "details"}:
        return None
    return body["error"]["code"]


def body_of(response: Any) -> bytes:
    if getattr(response, "streaming", False):
        return b"<streamed>"
    return bytes(response.content[:120])


def key_kind(caller: Caller) -> str:
    return "partner" if caller[0] in PARTNERS else "source"


def describe(caller: Caller) -> str:
    return f"{caller[0]}/{caller[1]}"


def expected_denial(spec: ById, thing: Thing, caller: Caller, method: str) -> tuple[int, str]:
    """What a caller who may not act gets: (status, error code or "" for any code)."""
    if spec.key != "any" and key_kind(caller) != spec.key:
        return 403, ""
    if spec.configuration and method != "get" and caller[1] == KeyMode.SANDBOX:
        return 403, "live_key_required"
    return 404, "not_found"


def may_act(spec: ById, thing: Thing, caller: Caller, method: str) -> bool:
    if spec.configuration:
        if caller[0] != thing.owner:
            return False
        return method == "get" or caller[1] == KeyMode.LIVE
    return caller in thing.readers()


def list_rows(response: Any, spec: Listing) -> list[str]:
    body = response.json()
    rows = body[spec.rows] if spec.rows else body["results"]
    return [str(row[spec.row_id]) for row in rows]


# --- The walk ------------------------------------------------------------------------------------


def test_every_path_and_method_in_the_schema_is_registered() -> None:
    operations = {(method, template) for method, template, _ in schema_operations()}
    missing = sorted(operations - set(REGISTRY))
    assert not missing, (
        f"These API operations have no entry in REGISTRY of {__file__}: {missing}. "
        "Register what each reaches (its object kind and factory, or why it holds no "
        "tenant's data), so this test can prove no other tenant and no key of the other "
        "mode reaches it."
    )
    stale = sorted(set(REGISTRY) - operations)
    assert not stale, f"REGISTRY names operations the schema no longer has: {stale}"


@override_settings(API_RATE_LIMIT_PER_MINUTE=100_000)
def test_no_key_reaches_an_object_of_another_tenant_or_the_other_mode(world: World) -> None:
    failures: list[str] = []
    walked = 0
    for method, template, operation in schema_operations():
        spec = REGISTRY.get((method, template))
        if not isinstance(spec, ById):
            continue  # unregistered: reported by the test above; the rest below
        for thing in world.things[spec.kind]:
            for caller in CALLERS:
                client = world.clients[caller]
                label = f"{method.upper()} {template} ({thing.owner}/{thing.mode} {thing.kind}) "
                label += f"as {describe(caller)}"
                if may_act(spec, thing, caller, method):
                    if method == "get":  # the object is there: a 404 to others is scoping
                        response = call(client, method, template, operation, thing.param)
                        if response.status_code != 200:
                            failures.append(f"{label}: {response.status_code}, expected 200")
                    continue
                before = database_state(thing.obj)
                body = spec.body() if spec.body else None
                response = call(client, method, template, operation, thing.param, body)
                walked += 1
                status, code = expected_denial(spec, thing, caller, method)
                got = error_code(response)
                if response.status_code != status or got is None or (code and got != code):
                    failures.append(
                        f"{label}: {response.status_code} {got or body_of(response)!r}, "
                        f"expected {status} {code or ''}"
                    )
                elif database_state(thing.obj) != before:
                    failures.append(f"{label}: answered {status} but changed data")
    assert walked > 100
    assert not failures, f"{len(failures)} leak(s):\n" + "\n".join(failures)


@override_settings(API_RATE_LIMIT_PER_MINUTE=100_000)
def test_no_list_shows_an_item_of_another_tenant_or_the_other_mode(world: World) -> None:
    failures: list[str] = []
    for method, template, operation in schema_operations():
        spec = REGISTRY.get((method, template))
        if not isinstance(spec, Listing):
            continue
        things = world.things[spec.kind]
        for caller in CALLERS:
            label = f"{method.upper()} {template} as {describe(caller)}"
            response = call(world.clients[caller], method, template, operation, "")
            if key_kind(caller) != "partner":
                if response.status_code != 403 or error_code(response) is None:
                    failures.append(f"{label}: {response.status_code}, expected 403")
                continue
            if spec.sandbox_error and caller[1] == KeyMode.SANDBOX:
                if response.status_code != 404 or error_code(response) != spec.sandbox_error:
                    failures.append(
                        f"{label}: {response.status_code} {response.content[:120]!r}, "
                        f"expected 404 {spec.sandbox_error}"
                    )
                continue
            if response.status_code != 200:
                failures.append(f"{label}: {response.status_code}, expected 200")
                continue
            listed = set(list_rows(response, spec))
            for thing in things:
                if spec.configuration:
                    visible = caller[0] == thing.owner
                else:
                    visible = caller in thing.readers()
                if thing.param in listed and not visible:
                    failures.append(f"{label}: lists {thing.owner}/{thing.mode} {thing.kind}")
                elif visible and thing.param not in listed:
                    failures.append(
                        f"{label}: misses its own {thing.owner}/{thing.mode} {thing.kind}"
                    )
    assert not failures, f"{len(failures)} leak(s):\n" + "\n".join(failures)


@override_settings(API_RATE_LIMIT_PER_MINUTE=100_000)
def test_paths_without_an_object_show_the_caller_itself_or_global_data(world: World) -> None:
    from marketplace.models import Referral
    from tests.factories import referral_payload

    failures: list[str] = []
    for method, template, operation in schema_operations():
        spec = REGISTRY.get((method, template))
        for caller in CALLERS:
            client = world.clients[caller]
            label = f"{method.upper()} {template} as {describe(caller)}"
            if isinstance(spec, Itself):
                response = call(client, method, template, operation, "")
                if key_kind(caller) != "partner":
                    if response.status_code != 403:
                        failures.append(f"{label}: {response.status_code}, expected 403")
                elif response.json().get("id") != str(world.partners[caller[0]].pk):
                    failures.append(f"{label}: shows another partner")
                elif response.json()["key"]["mode"] != caller[1]:
                    failures.append(f"{label}: shows another key's mode")
            elif isinstance(spec, OwnList):
                if key_kind(caller) != "partner":
                    response = call(client, method, template, operation, "")
                    if response.status_code != 403:
                        failures.append(f"{label}: {response.status_code}, expected 403")
                elif method == "get":
                    response = call(client, method, template, operation, "")
                    if response.status_code != 200 or "count" not in response.json():
                        failures.append(f"{label}: {response.status_code}, expected its list")
            elif isinstance(spec, Intake):
                before = Referral.objects.count()
                response = client.post(template, referral_payload(), format="json")
                if key_kind(caller) != "source":
                    if response.status_code != 403 or Referral.objects.count() != before:
                        failures.append(f"{label}: {response.status_code}, expected 403")
                    continue
                if response.status_code != 201:
                    failures.append(f"{label}: {response.status_code}, expected 201")
                    continue
                made = Referral.objects.get(pk=response.json()["id"])
                if made.source_id != world.sources[caller[0]].pk:
                    failures.append(f"{label}: made a referral of another source")
                if made.is_sandbox != (caller[1] == KeyMode.SANDBOX):
                    failures.append(f"{label}: made a referral of the other mode")
                if any(lead.is_sandbox != made.is_sandbox for lead in made.leads.all()):
                    failures.append(f"{label}: made leads of the other mode")
            elif isinstance(spec, Global):
                response = call(client, method, template, operation, "")
                if response.status_code not in {200, 400}:  # consistency needs parameters
                    failures.append(f"{label}: {response.status_code}")
    assert not failures, "\n".join(failures)
