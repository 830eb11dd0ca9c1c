"""A portal world: partners A and B, each with a row of everything the portal shows (live
and sandbox leads, returns, an issued invoice with a credit note, a payment, API keys, a
webhook endpoint and message, a post attempt, a deletion request), made through the real
services; and the people who knock on the portal's door."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.test import Client
from django.utils import timezone

from billing.invoicing import generate_invoices, issue_invoice
from billing.models import CreditNote, Invoice, Payment
from billing.payments import record_payment
from consent import gate, grants
from consent.models import DeletionRequest
from marketplace.models import DeliveryAttempt, Lead
from partners import webhook_delivery
from partners.keys import issue_api_key
from partners.models import ApiKey, KeyMode, Partner, WebhookEndpoint, WebhookMessage
from partners.permissions import grant_partner_access
from partners.webhook_signing import create_endpoint
from tests.billing.builders import LeadBuilder, current_period, post, report, schedule
from tests.factories import PartnerFactory, ProductFactory

PASSWORD = "pw-portal-2026!"


@dataclass
class Side:
    """One partner's rows."""

    partner: Partner
    lead: Lead  # live, delivered, accepted (returnable)
    returned_lead: Lead  # live, returned (credited)
    sandbox_lead: Lead
    invoice: Invoice
    credit_note: CreditNote
    payment: Payment
    key: ApiKey
    endpoint: WebhookEndpoint
    message: WebhookMessage
    attempt: DeliveryAttempt
    deletion: DeletionRequest


@dataclass
class World:
    a: Side
    b: Side
    users: dict[str, Any] = field(default_factory=dict)


def _side(builder: LeadBuilder, name: str, slug: str, bank_reference: str) -> dict[str, Any]:
    partner = PartnerFactory(name=name, slug=slug, legal_name=f"{name} Co., Ltd.")
    product = ProductFactory(partner=partner, name=f"{name} cash loan")
    schedule(partner)
    now = timezone.now()
    lead = builder.lead(product=product, delivered_at=now - timedelta(days=2))
    returned = builder.lead(product=product, delivered_at=now - timedelta(days=2))
    sandbox = builder.lead(product=product, is_sandbox=True, delivered_at=now - timedelta(days=1))
    post(lead, report("accepted", now - timedelta(days=1)))
    post(returned, report("accepted", now - timedelta(days=1, hours=2)))
    key = issue_api_key(partner=partner, mode=KeyMode.LIVE, name="production").api_key
    endpoint, _ = create_endpoint(partner=partner, url=f"http://127.0.0.1:9/{slug}/hooks")
    (message,) = webhook_delivery.enqueue(
        partner_id=partner.pk,
        event_type="lead.delivered",
        data={"lead_id": str(lead.pk)},
        dedupe_key=f"portal-test:{slug}",
    )
    attempt = DeliveryAttempt.objects.create(
        lead=lead,
        url=f"http://127.0.0.1:9/{slug}/post",
        started_at=now - timedelta(days=2),
        latency_ms=140,
        http_status=200,
        outcome="success",
    )
    return {
        "partner": partner,
        "lead": lead,
        "returned_lead": returned,
        "sandbox_lead": sandbox,
        "key": key,
        "endpoint": endpoint,
        "message": message,
        "attempt": attempt,
        "bank_reference": bank_reference,
    }


def build_world() -> World:
    # A builder per partner: each side's leads carry their own applicant and consent.
    rows = [
        _side(LeadBuilder(), "Alpha Lending", "alpha-lending", "ALPHA-REF-11"),
        _side(LeadBuilder(), "Bravo Credit", "bravo-credit", "BRAVO-REF-77"),
    ]
    period = current_period()
    for invoice in generate_invoices(period=period):
        issue_invoice(invoice_id=invoice.pk)
    now = timezone.now()
    for row in rows:
        row["payment"], _ = record_payment(
            partner_id=row["partner"].pk,
            currency="CNY",
            amount="10.00",
            received_at=now,
            bank_reference=row["bank_reference"],
            allocate=True,
        )
        post(row["returned_lead"], report("returned", now - timedelta(hours=1), reason="duplicate"))
    generate_invoices(period=period)  # the credit notes of the returns

    # Each partner received its applicant, who then withdrew consent: one deletion request
    # (and withdrawal) per partner.
    for row in rows:
        grant = row["lead"].referral.grant
        grants.add_matched_recipients(grant=grant, partner_ids=[row["partner"].pk])
        gate.disclose(
            grant_id=grant.id,
            partner_id=row["partner"].pk,
            purpose="loan_referral",
            reference=f"lead:{row['lead'].pk}",
        )
        grants.withdraw(grant_id=grant.id, channel="admin")

    sides = []
    for row in rows:
        partner = row["partner"]
        sides.append(
            Side(
                partner=partner,
                lead=row["lead"],
                returned_lead=row["returned_lead"],
                sandbox_lead=row["sandbox_lead"],
                invoice=Invoice.objects.get(partner=partner, status__in=["issued", "partly_paid"]),
                credit_note=CreditNote.objects.get(partner=partner),
                payment=row["payment"],
                key=row["key"],
                endpoint=row["endpoint"],
                message=row["message"],
                attempt=row["attempt"],
                deletion=DeletionRequest.objects.get(partner=partner),
            )
        )
    world = World(a=sides[0], b=sides[1])
    world.users = make_users(world)
    return world


def make_users(world: World) -> dict[str, Any]:
    user_model = get_user_model()
    users: dict[str, Any] = {}
    for name, partners, manage in (
        ("alpha", [world.a.partner], True),
        ("bravo", [world.b.partner], True),
        ("alpha-viewer", [world.a.partner], False),
        ("both", [world.a.partner, world.b.partner], True),
    ):
        user = user_model.objects.create_user(name, password=PASSWORD)
        for partner in partners:
            grant_partner_access(user=user, partner=partner, manage=manage)
        users[name] = user
    ops = user_model.objects.create_user("ops", password=PASSWORD, is_staff=True)
    ops.groups.add(Group.objects.get(name="ops"))
    users["ops"] = ops
    users["root"] = user_model.objects.create_superuser("root", "r@example.invalid", PASSWORD)
    users["plain"] = user_model.objects.create_user("plain", password=PASSWORD)
    return users


@pytest.fixture
def world(db: None) -> World:
    return build_world()


def client_for(user: Any, *, partner: Partner | None = None) -> Client:
    client = Client(raise_request_exception=False)
    client.force_login(user)
    if partner is not None:
        session = client.session
        session["portal_partner"] = str(partner.pk)
        session.save()
    return client


@pytest.fixture(autouse=True)
def _fast_passwords(settings: Any) -> None:
    # The portal's tests are about access, not PBKDF2's cost.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
