"""factory-boy factories and small builders shared by the tests."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import factory
from django.utils import timezone

from billing.models import FeeSchedule
from consent.grants import publish_text
from consent.models import ConsentText
from partners.models import DeliveryMode, Partner, PartnerStatus, Product, TrafficSource
from partners.registry import PartnerLicence


class PartnerFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Partner
        skip_postgeneration_save = True  # the licence is its own row

    name = factory.Sequence(lambda n: f"Partner Lender {n}")
    slug = factory.Sequence(lambda n: f"partner-lender-{n}")
    legal_name = factory.LazyAttribute(lambda o: f"{o.name} Co., Ltd.")
    licence_number = factory.Sequence(lambda n: f"LIC-{n:06d}")
    status = PartnerStatus.LIVE
    # Listed in the registry with a licence in force (an unlisted partner is never routed
    # to); ``PartnerFactory(licence=None)`` makes an unlisted one.
    licence = factory.RelatedFactory(
        "tests.factories.PartnerLicenceFactory", factory_related_name="partner"
    )


class PartnerLicenceFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = PartnerLicence

    partner = factory.SubFactory(PartnerFactory, licence=None)
    number = factory.LazyAttribute(lambda o: o.partner.licence_number or "LIC-UNLISTED")
    issuer = "NFRA Beijing Office"
    valid_from = date(2020, 1, 1)
    expires_on = date(2099, 12, 31)


class ProductFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Product

    partner = factory.SubFactory(PartnerFactory)
    name = "Consumer loan"
    min_amount = Decimal("1000.00")
    max_amount = Decimal("50000.00")
    min_term_months = 3
    max_term_months = 24
    risk_tiers = ["R3", "R4", "R5", "R6"]
    min_age = 20
    max_age = 55
    min_monthly_income = Decimal("2000.00")
    apr_min = Decimal("0.1500")
    apr_max = Decimal("0.2200")
    delivery_mode = DeliveryMode.DIRECT_POST
    post_url = "http://127.0.0.1:9/unused/post"
    post_timeout_ms = 2000


class TrafficSourceFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = TrafficSource

    name = factory.Sequence(lambda n: f"Operator {n}")


class FeeScheduleFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = FeeSchedule

    partner = factory.SubFactory(PartnerFactory)
    cpl = Decimal("40.00")
    cpa = Decimal("250.00")
    cpf_rate = Decimal("0.0300")
    cpf_min = Decimal("50.00")
    cpf_max = Decimal("2000.00")
    effective_from = datetime(2026, 1, 1, tzinfo=UTC)


CONSENT_VERSION = "test-consent-v1"


def published_consent_text(version: str = CONSENT_VERSION) -> ConsentText:
    text, _ = ConsentText.objects.get_or_create(
        version=version,
        defaults={
            "title": "Consent to share with matched lenders",
            "body": "I agree that my data is shared with lenders matched to my application.",
            "purposes": ["loan_referral"],
            "data_categories": ["name", "phone", "national_id"],
        },
    )
    return publish_text(text=text)


def referral_payload(**overrides: Any) -> dict[str, Any]:
    """A valid intake body that fits ProductFactory's defaults. Values are made up."""
    now = timezone.now()
    national_id = overrides.pop("national_id", f"11010119900307{uuid.uuid4().int % 10000:04d}")
    body: dict[str, Any] = {
        "applicant": {
            "full_name": "Wang Xiaoming",
            "phone": "+86 138 0013 8000",
            "national_id": national_id,
            "birth_date": "1990-03-07",
            "monthly_income": "8500.00",
            "employer": "Example Tech Co.",
            "address": "1 Keji Road, Nanshan, Shenzhen",
        },
        "loan": {
            "amount": "8000.00",
            "currency": "CNY",
            "term_months": 12,
            "purpose": "consumption",
        },
        "risk_tier": "R5",
        "decline_reason": "outside_risk_appetite",
        "channel": "app",
        "region": "CN-GD",
        "employment_type": "employed",
        "consent": {
            "text_version": CONSENT_VERSION,
            "collected_at": (now - timedelta(minutes=1)).isoformat(),
            "expires_at": (now + timedelta(days=365)).isoformat(),
            "channel": "app",
            "method": "checkbox",
            "scope": "matched_partners",
            "purposes": ["loan_referral"],
            "ip_address": "203.0.113.9",
            "user_agent": "OperatorApp/5.2",
        },
    }
    for key, value in overrides.items():
        body[key] = value
    return body
