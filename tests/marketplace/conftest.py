"""Fixtures for the routing domain's tests: referrals through the real intake service,
leads moved to a status, and a partner's API client."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from consent.models import ConsentGrant, Disclosure, LedgerEntry, Subject
from marketplace import intake
from marketplace.api import ReferralInput
from marketplace.models import Lead, LeadStatus, Referral
from partners.models import IdempotencyRecord, TrafficSource
from tests.factories import referral_payload

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
    )


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
