"""Referral intake: vault the applicant, record consent, route. One transaction."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from django.db import IntegrityError, transaction
from django.utils import timezone

from consent import grants, vault
from consent.grants import ConsentEvidence
from consent.models import ConsentGrant, Subject
from consent.vault import ApplicantData
from marketplace import routing, tasks, validation
from marketplace.bands import age_on, income_band_floor
from marketplace.delivery import REFERRAL_PURPOSE
from marketplace.models import Referral, ReferralStatus
from partners.models import TrafficSource


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
) -> Referral:
    """Store the referral and its leads. Raises IntakeRefused (a minor, stale consent, ...)
    or ConsentError (bad consent input) and nothing is stored; consent that is valid but
    not usable makes it *not routable*. ``is_sandbox``: sent with a sandbox key (the
    referral, its consent and its leads are sandbox traffic); ``acting_key``: that key,
    recorded in the consent's ledger entry."""
    now = timezone.now()
    validation.check_referral(applicant=request.applicant, consent=request.consent, now=now)
    with transaction.atomic():
        if _already_received(source=source, source_reference=request.source_reference):
            raise DuplicateReferral(request.source_reference)
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
        _save_new(referral=referral, source=source, source_reference=request.source_reference)
        if referral.status == ReferralStatus.NO_MATCH:
            _route(referral=referral, grant=grant)
        # Last: the ledger's sequence lock is held from here to commit, so the rest of the
        # intake does not serialise on it.
        grants.log_grant(grant=grant, acting_key=acting_key)
        return referral


def _already_received(*, source: TrafficSource, source_reference: str) -> bool:
    return bool(source_reference) and (
        Referral.objects.filter(source=source, source_reference=source_reference).exists()
    )


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


def _save_new(*, referral: Referral, source: TrafficSource, source_reference: str) -> None:
    try:
        with transaction.atomic():
            referral.save()
    except IntegrityError:
        # The check before the vault is only a fast path: a concurrent request with the
        # same source_reference may have committed since, and the unique constraint says so.
        if _already_received(source=source, source_reference=source_reference):
            raise DuplicateReferral(source_reference) from None
        raise


def _route(*, referral: Referral, grant: ConsentGrant) -> None:
    routed = routing.route(referral=referral, grant=grant)
    tasks.queue_routed(routed)  # after commit: nothing runs if the intake rolls back
    if routed.leads or routed.auction:
        referral.status = ReferralStatus.ROUTED
        referral.save(update_fields=["status"])
