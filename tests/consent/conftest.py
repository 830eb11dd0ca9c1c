"""Fixtures for the consent app's tests: known vault keys, applicants and grants."""

from __future__ import annotations

import base64
import secrets
import uuid
from collections.abc import Callable, Iterator, Sequence
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.db import transaction
from django.utils import timezone

from consent import crypto, grants, vault
from consent.grants import ConsentEvidence
from consent.models import ConsentGrant, ConsentText, GrantScope, Subject
from consent.vault import ApplicantData
from partners.models import Partner, TrafficSource

MakeApplicant = Callable[..., ApplicantData]
MakeGrant = Callable[..., ConsentGrant]


def new_b64_key() -> str:
    return base64.b64encode(secrets.token_bytes(32)).decode()


@pytest.fixture(autouse=True)
def _fresh_vault_caches() -> Iterator[None]:
    """The canary check is remembered per process and parsed keys are cached: tests that
    change VAULT_MASTER_KEYS must start (and leave) with neither."""
    vault._checked_key_ids.clear()
    crypto._master_keys_for.cache_clear()
    yield
    vault._checked_key_ids.clear()
    crypto._master_keys_for.cache_clear()


@pytest.fixture
def vault_keys(settings: Any) -> dict[str, str]:
    """Fresh, known vault keys for this test (master key id 'test-1')."""
    keys = {"master": new_b64_key(), "blind": new_b64_key()}
    settings.VAULT_MASTER_KEYS = f"test-1:{keys['master']}"
    settings.BLIND_INDEX_KEY = keys["blind"]
    return keys


@pytest.fixture
def make_applicant() -> MakeApplicant:
    def make(**overrides: Any) -> ApplicantData:
        values: dict[str, Any] = {
            "full_name": "王小明",
            "phone": "+86 138 0013 8000",
            "national_id": f"11010119900307{uuid.uuid4().int % 10000:04d}",
            "birth_date": date(1990, 3, 7),
            "monthly_income": Decimal("8500.00"),
            "employer": "Shenzhen Example Tech Co.",
            "address": "广东省深圳市南山区科技园 1 号",
        }
        values.update(overrides)
        return ApplicantData(**values)

    return make


@pytest.fixture
def make_grant(
    source: TrafficSource, consent_text: ConsentText, make_applicant: MakeApplicant
) -> MakeGrant:
    """A stored subject and a named-partners consent grant, as intake records them."""

    def make(
        *,
        partners: Sequence[Partner] = (),
        subject: Subject | None = None,
        purposes: tuple[str, ...] = ("loan_referral",),
        collected_at: datetime | None = None,
        expires_at: datetime | None = None,
    ) -> ConsentGrant:
        now = timezone.now()
        collected_at = collected_at or now - timedelta(minutes=1)
        with transaction.atomic():
            if subject is None:
                subject = vault.store_subject(applicant=make_applicant(), is_sandbox=False)
            return grants.record_grant(
                subject=subject,
                source=source,
                evidence=ConsentEvidence(
                    text_version=consent_text.version,
                    collected_at=collected_at,
                    expires_at=expires_at or now + timedelta(days=365),
                    channel="app",
                    method="checkbox",
                    scope=GrantScope.NAMED_PARTNERS if partners else GrantScope.MATCHED_PARTNERS,
                    purposes=purposes,
                    named_partner_ids=tuple(p.id for p in partners),
                    ip_address="203.0.113.9",
                    user_agent="OperatorApp/5.2",
                ),
            )

    return make
