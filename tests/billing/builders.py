"""Builders for billing tests: delivered leads made with the ORM (no HTTP partners) and
events reported through the real path, billing.outcomes.report_outcome."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from django.db import transaction
from django.utils import timezone

from billing.invoicing import Period
from billing.models import Charge, FeeSchedule
from billing.outcomes import report_outcome
from consent.grants import ConsentEvidence, record_grant
from consent.models import ConsentGrant, GrantScope, Subject
from consent.vault import ApplicantData, store_subject
from marketplace.bands import income_band_floor
from marketplace.events import EventReport, record_event
from marketplace.models import Lead, LeadEvent, LeadStatus, Referral, ReferralStatus
from partners.models import DeliveryMode, Partner, Product, TrafficSource
from tests.factories import (
    CONSENT_VERSION,
    FeeScheduleFactory,
    PartnerFactory,
    ProductFactory,
    TrafficSourceFactory,
    published_consent_text,
)


class LeadBuilder:
    """Delivered leads for billing tests. The source, and a subject and consent grant per key
    mode, are made once per test and shared by every referral of that mode (a sandbox
    referral has a sandbox subject and grant, as intake makes them): only the referral and
    lead are new."""

    def __init__(self) -> None:
        self._source: TrafficSource | None = None
        self._bases: dict[bool, tuple[Subject, ConsentGrant]] = {}

    def _shared(self, *, is_sandbox: bool) -> tuple[TrafficSource, Subject, ConsentGrant]:
        if self._source is None:
            with transaction.atomic():
                published_consent_text()
                self._source = TrafficSourceFactory()
        if is_sandbox not in self._bases:
            now = timezone.now()
            with transaction.atomic():
                subject = store_subject(
                    applicant=ApplicantData(
                        full_name="Li Na",
                        phone="+86 139 0000 0000",
                        national_id=f"11010119900307{uuid.uuid4().int % 10000:04d}",
                        birth_date=date(1990, 3, 7),
                        monthly_income=Decimal("8500.00"),
                        employer="Example Tech Co.",
                        address="1 Keji Road, Nanshan, Shenzhen",
                    ),
                    is_sandbox=is_sandbox,
                )
                grant = record_grant(
                    subject=subject,
                    source=self._source,
                    evidence=ConsentEvidence(
                        text_version=CONSENT_VERSION,
                        collected_at=now - timedelta(days=60),
                        channel="app",
                        method="checkbox",
                        scope=GrantScope.MATCHED_PARTNERS,
                        expires_at=now + timedelta(days=365),
                    ),
                )
            self._bases[is_sandbox] = (subject, grant)
        subject, grant = self._bases[is_sandbox]
        return self._source, subject, grant

    def lead(
        self,
        *,
        partner: Partner | None = None,
        product: Product | None = None,
        is_sandbox: bool = False,
        delivered_at: datetime | None = None,
    ) -> Lead:
        source, subject, grant = self._shared(is_sandbox=is_sandbox)
        if product is None:
            product = ProductFactory(partner=partner or PartnerFactory())
        referral = Referral.objects.create(
            source=source,
            subject=subject,
            grant=grant,
            is_sandbox=is_sandbox,
            amount=Decimal("8000.00"),
            term_months=12,
            purpose="consumption",
            risk_tier="R5",
            decline_reason="outside_risk_appetite",
            channel="app",
            region="CN-GD",
            age=36,
            # The band floor intake would store for the applicant's 8,500 a month.
            income_band_floor=income_band_floor(Decimal("8500.00")),
            employment_type="employed",
            status=ReferralStatus.ROUTED,
        )
        return Lead.objects.create(
            referral=referral,
            partner=product.partner,
            product=product,
            subject=subject,
            is_sandbox=is_sandbox,
            delivery_mode=DeliveryMode.DIRECT_POST,
            status=LeadStatus.DELIVERED,
            delivered_at=delivered_at or timezone.now() - timedelta(days=3),
        )

    def billed_lead(self, **kwargs: Any) -> Lead:
        """A delivered lead whose partner has the default fee schedule."""
        lead = self.lead(**kwargs)
        schedule(lead.partner)
        return lead


def schedule(partner: Partner, **fees: Any) -> FeeSchedule:
    """A partner-wide fee schedule in force for the past year and open-ended; by default
    CPL 40, CPA 250, CPF 3% within [50, 2000], in CNY."""
    fees.setdefault("effective_from", timezone.now() - timedelta(days=365))
    return FeeScheduleFactory(partner=partner, **fees)


def current_period() -> Period:
    return Period(timezone.now().date().replace(day=1))


def report(
    event_type: str,
    occurred_at: datetime,
    *,
    external_id: str | None = None,
    **values: Any,
) -> EventReport:
    """An event report with the values its type needs (approved 20000 at 21%, funded
    15000, a return reason), each overridable."""
    defaults: dict[str, dict[str, Any]] = {
        "approved": {"amount": Decimal("20000.00"), "apr": Decimal("0.2100")},
        "funded": {"principal": Decimal("15000.00")},
        "rejected": {"reason": "policy"},
        "returned": {"reason": "duplicate"},
    }
    return EventReport(
        external_id=external_id or f"evt-{uuid.uuid4()}",
        type=event_type,
        occurred_at=occurred_at,
        **{**defaults.get(event_type, {}), **values},
    )


def post(lead: Lead, event_report: EventReport) -> tuple[LeadEvent, bool]:
    """Report an event on the real path (the partner API's: stored, then charged), or,
    inside :func:`billing_offline`, only stored as marketplace does."""
    if _offline:
        return record_event(lead_id=lead.id, partner_id=lead.partner_id, report=event_report)
    return report_outcome(lead_id=lead.id, partner_id=lead.partner_id, report=event_report)


_offline: list[bool] = []


@contextmanager
def billing_offline() -> Iterator[None]:
    """Events stored while billing does not hear of them (an outage, a bug): the ledger
    misses what they should have booked until the catch-up charger runs."""
    _offline.append(True)
    try:
        yield
    finally:
        _offline.pop()


def ledger(lead: Lead) -> list[tuple[str, str, Decimal]]:
    """The lead's ledger as sorted (kind, entry_type, amount) triples."""
    return sorted(Charge.objects.filter(lead=lead).values_list("kind", "entry_type", "amount"))
