"""Referral intake: vault the applicant, record consent, route, and write the one outbox
message that distributes the referral. One transaction, no savepoint, no read-back."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from django.db import IntegrityError, transaction
from django.utils import timezone

from consent import grants, vault
from consent.grants import ConsentEvidence
from consent.models import ConsentGrant, Subject
from consent.vault import ApplicantData
from marketplace import dispatch, routing, tasks, validation
from marketplace.bands import age_on, income_band_floor
from marketplace.delivery import REFERRAL_PURPOSE
from marketplace.models import Lead, Referral, ReferralStatus
from marketplace.routing import Routed
from partners.models import TrafficSource

SOURCE_REFERENCE_CONSTRAINT = "referral_unique_source_reference"


class DuplicateReferral(ValueError):
    """The source already sent a referral with this source_reference."""


@dataclass(frozen=True)
class ReferralRequest:
    applicant: ApplicantData
    consent: ConsentEvidence
    amount: Decimal
    currency: str
    term_months: int
    purpose: str
    risk_tier: str
    decline_reason: str
    channel: str
    region: str
    employment_type: str
    source_reference: str = ""


def create_referral(
    *,
    source: TrafficSource,
    request: ReferralRequest,
    is_sandbox: bool,
    acting_key: dict[str, str] | None = None,
) -> Intake:
    """Store the referral and its leads, and the one outbox message that distributes them
    (``dispatch_referral``, published after commit). Raises IntakeRefused (a minor, stale
    consent, ...), ConsentError (bad consent input) or DuplicateReferral, and nothing is
    stored; consent that is valid but not usable makes it *not routable*. ``is_sandbox``:
    sent with a sandbox key (the referral, its consent and its leads are sandbox traffic);
    ``acting_key``: that key, recorded in the consent's ledger entry.

    Joins the caller's transaction when there is one, without a savepoint: any error here
    aborts the whole request, which then stores nothing."""
    now = timezone.now()
    validation.check_referral(applicant=request.applicant, consent=request.consent, now=now)
    with transaction.atomic(savepoint=False):
        # The person's subject in this key's mode: sandbox traffic with a real person's
        # numbers gets a sandbox subject apart from their live one (consent.vault).
        subject = vault.store_subject(applicant=request.applicant, is_sandbox=is_sandbox)
        grant = grants.create_grant(subject=subject, source=source, evidence=request.consent)
        referral = _new_referral(
            source=source,
            request=request,
            subject=subject,
            grant=grant,
            is_sandbox=is_sandbox,
            now=now,
        )
        routed = _route(referral=referral, grant=grant, now=now)
        # Inserted after its leads (foreign keys are checked at commit), so it is written
        # once, with its final status; the unique constraint, not a pre-check, says whether
        # the source sent this reference before.
        _insert(referral)
        if referral.status == ReferralStatus.ROUTED:
            tasks.queue_referral(referral.id)  # the one message, published after commit
        # Last: whatever the ledger serialises on is held for as short a time as possible.
        grants.log_grant(grant=grant, acting_key=acting_key)
        leads = routed.leads if routed else []
        return Intake(
            referral=referral,
            leads=leads,
            grant_recipients=grants.recipients_of_new_grant(
                grant,
                evidence=request.consent,
                matched_partner_ids=[lead.partner_id for lead in leads],
            ),
        )


@dataclass(frozen=True)
class Intake:
    """What intake stored, in memory: enough to answer the request without reading back."""

    referral: Referral
    leads: list[Lead]  # direct and pull leads, in consumer order (cheapest APR first)
    grant_recipients: frozenset[uuid.UUID]  # the partners the new grant lets us disclose to


def _new_referral(
    *,
    source: TrafficSource,
    request: ReferralRequest,
    subject: Subject,
    grant: ConsentGrant,
    is_sandbox: bool,
    now: datetime,
) -> Referral:
    """The unsaved referral: the loan request, the applicant's bands (never their personal
    data) and a status saying whether the consent lets it be routed."""
    referral = Referral(
        source=source,
        source_reference=request.source_reference,
        subject=subject,
        grant=grant,
        is_sandbox=is_sandbox,
        amount=request.amount,
        currency=request.currency,
        term_months=request.term_months,
        purpose=request.purpose,
        risk_tier=request.risk_tier,
        decline_reason=request.decline_reason,
        channel=request.channel,
        region=request.region,
        age=age_on(request.applicant.birth_date, now.date()),
        income_band_floor=income_band_floor(request.applicant.monthly_income),
        employment_type=request.employment_type,
    )
    if grant.expires_at <= now:  # a grant made this instant cannot be withdrawn yet
        referral.status = ReferralStatus.NOT_ROUTABLE
        referral.status_reason = "consent has expired"
    elif REFERRAL_PURPOSE not in grant.purposes:
        referral.status = ReferralStatus.NOT_ROUTABLE
        referral.status_reason = f"consent does not cover the purpose {REFERRAL_PURPOSE!r}"
    else:
        referral.status = ReferralStatus.NO_MATCH  # until routing finds partners
    return referral


def _insert(referral: Referral) -> None:
    try:
        referral.save(force_insert=True)
    except IntegrityError as exc:
        if _violates(exc, SOURCE_REFERENCE_CONSTRAINT, column="source_reference"):
            raise DuplicateReferral(referral.source_reference) from None
        raise


def _violates(exc: IntegrityError, constraint: str, *, column: str) -> bool:
    """Whether the IntegrityError is this unique constraint's (PostgreSQL names the
    constraint, SQLite its columns)."""
    diag = getattr(exc.__cause__, "diag", None)
    name = getattr(diag, "constraint_name", None)
    if name is not None:
        return bool(name == constraint)
    return column in str(exc)


def _route(*, referral: Referral, grant: ConsentGrant, now: datetime) -> Routed | None:
    """Route a routable referral and set its status: *routed* while posts or an auction
    are to come (terminal by ``settle_by``), *distributed* when its partners only pull,
    *no match* when none fits."""
    if referral.status != ReferralStatus.NO_MATCH:
        return None
    routed = routing.route(referral=referral, grant=grant)
    if routed.to_post or routed.auction:
        referral.status = ReferralStatus.ROUTED
        referral.settle_by = dispatch.settle_by(now)
    elif routed.leads:
        referral.status = ReferralStatus.DISTRIBUTED
    return routed
