"""Fixtures for the routing domain's tests: referrals through the real intake service,
leads moved to a status, and a partner's API client reporting events on its leads."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from consent.models import ConsentGrant, Disclosure, LedgerEntry, Subject
from marketplace import intake
from marketplace.api import ReferralInput
from marketplace.models import Lead, LeadStatus, Referral
from partners.models import IdempotencyRecord, Partner, TrafficSource
from tests.conftest import partner_client
from tests.factories import PartnerFactory, ProductFactory, referral_payload

REFERRALS_URL = "/api/v1/referrals"

# Applicant values that must never show up outside the vault, a post or a detail read.
PII_STRING_FIELDS = ("full_name", "phone", "national_id", "employer", "address")


def pii_strings(payload: dict[str, Any]) -> list[str]:
    return [payload["applicant"][name] for name in PII_STRING_FIELDS]


def stored_counts() -> dict[str, int]:
    """Row counts of everything an intake may write."""
    return {
        "subjects": Subject.objects.count(),
        "grants": ConsentGrant.objects.count(),
        "referrals": Referral.objects.count(),
        "leads": Lead.objects.count(),
        "ledger_entries": LedgerEntry.objects.count(),
        "disclosures": Disclosure.objects.count(),
        "idempotency_records": IdempotencyRecord.objects.count(),
    }


def create_referral(
    source: TrafficSource, payload: dict[str, Any], *, is_sandbox: bool = False
) -> Referral:
    """A referral through the intake service, from a body the API would accept."""
    serializer = ReferralInput(data=payload)
    assert serializer.is_valid(), serializer.errors
    return intake.create_referral(
        source=source, request=serializer.to_request(), is_sandbox=is_sandbox
    ).referral


@pytest.fixture
def make_referral(source: TrafficSource, consent_text: object) -> Callable[..., Referral]:
    """``make_referral(**referral_payload overrides)``; leads are created, not delivered
    (the test transaction never commits, so no delivery task runs)."""

    def make(*, is_sandbox: bool = False, **overrides: Any) -> Referral:
        return create_referral(source, referral_payload(**overrides), is_sandbox=is_sandbox)

    return make


def set_lead_status(lead: Lead, status: str) -> Lead:
    """Move a lead as delivery would have (delivered_at set for delivered statuses)."""
    now = timezone.now()
    Lead.objects.filter(pk=lead.pk).update(
        status=status,
        delivered_at=None if status in {LeadStatus.MATCHED, LeadStatus.AVAILABLE} else now,
        updated_at=now,
    )
    lead.refresh_from_db()
    return lead


def api_post(client: APIClient, payload: Any, **headers: str) -> Any:
    return client.post(REFERRALS_URL, payload, format="json", headers=headers)


@pytest.fixture
def partner(db: None) -> Partner:
    """A live partner with one product, so every referral makes it a lead."""
    partner = PartnerFactory()
    ProductFactory(partner=partner)
    return partner


@pytest.fixture
def client(partner: Partner) -> APIClient:
    """The partner's API client (in place of Django's test client, which these tests never use)."""
    return partner_client(partner)


@pytest.fixture
def delivered(source: TrafficSource, consent_text: object) -> Callable[[Partner], Lead]:
    """``delivered(partner)``: the partner's lead of a fresh referral, delivered."""

    def make(partner: Partner) -> Lead:
        referral = create_referral(source, referral_payload())
        return set_lead_status(referral.leads.get(partner=partner), LeadStatus.DELIVERED)

    return make


@pytest.fixture
def lead(delivered: Callable[[Partner], Lead], partner: Partner) -> Lead:
    """One delivered lead of ``partner``."""
    return delivered(partner)


def report_event(
    client: APIClient, lead: Lead, event_type: str, event_id: str | None = None, **fields: Any
) -> Any:
    """POST one event on the lead through the partner API (a fresh event id unless given)."""
    body = {
        "event_id": event_id or f"{event_type}-{uuid.uuid4().hex[:8]}",
        "type": event_type,
        "occurred_at": timezone.now().isoformat(),
    }
    body.update(fields)
    return client.post(f"/api/v1/partner/leads/{lead.id}/events", body, format="json")


def error_body(response: Any) -> dict[str, Any]:
    """The ``error`` object of the project's one JSON error shape."""
    body: dict[str, Any] = response.json()["error"]
    return body


def funded_lead(client: APIClient, lead: Lead) -> Lead:
    """Report accepted, approved and funded on the lead; it is then funded."""
    for event_type, event_id, fields in [
        ("accepted", "e-acc", {}),
        ("approved", "e-app", {"amount": "8000.00", "apr": "0.1800"}),
        ("funded", "e-fund", {"principal": "7500.00"}),
    ]:
        assert report_event(client, lead, event_type, event_id, **fields).status_code == 201
    lead.refresh_from_db()
    assert lead.status == LeadStatus.FUNDED
    return lead
