"""Dedupe windows count only leads of the referral's own mode: sandbox traffic carrying a
real person's numbers never keeps that person's live application from a partner (nor the
reverse). And subjects stored before the vault split modes get their mode from their
referrals and grants."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from decimal import Decimal
from typing import Any

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

from consent import vault
from consent.grants import ConsentEvidence, record_grant
from consent.models import ConsentGrant, GrantScope, Subject
from consent.vault import ApplicantData
from marketplace.models import Lead, Referral
from partners.models import Partner, TrafficSource
from tests.factories import CONSENT_VERSION, PartnerFactory, ProductFactory, referral_payload
from tests.marketplace.conftest import create_referral

NATIONAL_ID = "110101199003070011"


@pytest.fixture
def partner(db: None) -> Partner:
    """Its product dedupes applicants over 30 days: the window under test."""
    partner = PartnerFactory()
    ProductFactory(partner=partner, dedupe_days=30)
    return partner


def partners_of(referral: Referral) -> set[Any]:
    return set(referral.leads.values_list("partner_id", flat=True))


@pytest.mark.django_db
@pytest.mark.parametrize(
    "first_sandbox", [True, False], ids=["sandbox-then-live", "live-then-sandbox"]
)
def test_a_lead_of_one_mode_does_not_dedupe_the_same_person_in_the_other_mode(
    make_referral: Callable[..., Referral], partner: Partner, first_sandbox: bool
) -> None:
    first = make_referral(national_id=NATIONAL_ID, is_sandbox=first_sandbox)
    assert partners_of(first) == {partner.id}

    other_mode = make_referral(national_id=NATIONAL_ID, is_sandbox=not first_sandbox)
    same_mode = make_referral(national_id=NATIONAL_ID, is_sandbox=first_sandbox)

    assert partners_of(other_mode) == {partner.id}
    assert partners_of(same_mode) == set()  # the window still holds within a mode


@pytest.mark.django_db
def test_dedupe_counts_only_leads_of_the_referrals_mode_even_on_one_subject(
    make_referral: Callable[..., Referral], partner: Partner
) -> None:
    """A subject stored before the split may carry sandbox leads next to live ones: routing
    states the mode itself rather than trusting every subject to be single-mode."""
    sandbox = make_referral(national_id=NATIONAL_ID, is_sandbox=True)
    payload = referral_payload(national_id=NATIONAL_ID)
    applicant = ApplicantData(
        **{**payload["applicant"], "birth_date": date(1990, 3, 7), "monthly_income": Decimal(8500)}
    )
    live_subject = vault.store_subject(applicant=applicant, is_sandbox=False)
    Referral.objects.filter(pk=sandbox.pk).update(subject=live_subject)
    Lead.objects.filter(referral=sandbox).update(subject=live_subject)

    live = make_referral(national_id=NATIONAL_ID)

    assert live.subject_id == live_subject.id
    assert partners_of(live) == {partner.id}


# --- Backfill of subjects stored before the split ----------------------------------------------

BEFORE = [("consent", "0004_grant_key_mode"), ("marketplace", "0009_event_partner_units_index")]


def _migrate(targets: list[tuple[str, str]] | None = None) -> None:
    executor = MigrationExecutor(connection)
    executor.migrate(targets or executor.loader.graph.leaf_nodes())
    executor.loader.build_graph()


@pytest.mark.django_db(transaction=True)
def test_subjects_stored_before_the_split_take_the_mode_of_their_traffic(
    source: TrafficSource, consent_text: object
) -> None:
    live = create_referral(source, referral_payload())
    sandbox = create_referral(source, referral_payload(), is_sandbox=True)
    mixed = create_referral(source, referral_payload())
    mixed_sandbox = create_referral(source, referral_payload(), is_sandbox=True)
    # Before the split a sandbox referral of a live person joined that person's subject.
    Referral.objects.filter(pk=mixed_sandbox.pk).update(subject_id=mixed.subject_id)
    ConsentGrant.objects.filter(pk=mixed_sandbox.grant_id).update(subject_id=mixed.subject_id)
    Subject.objects.filter(pk=mixed_sandbox.subject_id).delete()
    bare = create_referral(source, referral_payload(), is_sandbox=True).subject_id
    Referral.objects.filter(subject_id=bare).delete()  # only its sandbox grant is left

    try:
        _migrate(BEFORE)
    finally:
        _migrate()

    modes = dict(Subject.objects.values_list("pk", "is_sandbox"))
    assert modes == {
        live.subject_id: False,
        sandbox.subject_id: True,
        mixed.subject_id: False,  # it holds live traffic: it stays live
        bare: True,
    }


@pytest.mark.django_db
def test_a_grant_takes_its_subjects_mode(
    source: TrafficSource, consent_text: object, partner: Partner
) -> None:
    sandbox = create_referral(source, referral_payload(), is_sandbox=True)
    subject = Subject.objects.get(pk=sandbox.subject_id)
    now = timezone.now()
    grant = record_grant(
        subject=subject,
        source=source,
        evidence=ConsentEvidence(
            text_version=CONSENT_VERSION,
            collected_at=now,
            expires_at=now.replace(year=now.year + 1),
            channel="app",
            method="checkbox",
            scope=GrantScope.MATCHED_PARTNERS,
        ),
    )

    assert grant.is_sandbox is True
