"""Consent grants, receipts and withdrawals. Every change is also a ledger entry."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import transaction
from django.utils import timezone

from consent import deletion, ledger
from consent.models import ConsentGrant, ConsentText, ConsentWithdrawal, GrantScope, Subject
from partners.models import TrafficSource


class ConsentError(ValueError):
    """A consent request that cannot be honoured; ``field`` names the input at fault."""

    def __init__(self, message: str, *, field: str = "") -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class ConsentEvidence:
    text_version: str
    collected_at: datetime
    channel: str
    method: str
    scope: str
    expires_at: datetime
    purposes: tuple[str, ...] = ("loan_referral",)
    named_partner_ids: tuple[uuid.UUID, ...] = ()
    ip_address: str | None = None
    user_agent: str = ""


def sha256_text(body: str) -> str:
    return hashlib.sha256(body.encode()).hexdigest()


def publish_text(*, text: ConsentText) -> ConsentText:
    """Freeze the wording: hash it and stamp the publication time (no-op if published)."""
    with transaction.atomic():
        locked = ConsentText.objects.select_for_update().get(pk=text.pk)
        if locked.published_at is None:
            locked.sha256 = sha256_text(locked.body)
            locked.published_at = timezone.now()
            locked.save(update_fields=["sha256", "published_at"])
            ledger.append(
                kind="consent_text.published",
                data={
                    "version": locked.version,
                    "sha256": locked.sha256,
                    "language": locked.language,
                    "jurisdiction": locked.jurisdiction,
                },
            )
        return locked


def record_grant(
    *,
    subject: Subject,
    source: TrafficSource,
    evidence: ConsentEvidence,
    acting_key: dict[str, str] | None = None,
) -> ConsentGrant:
    """Store a consent grant and append it to the ledger. Caller holds the transaction."""
    grant = create_grant(subject=subject, source=source, evidence=evidence)
    log_grant(grant=grant, acting_key=acting_key)
    return grant


def create_grant(
    *,
    subject: Subject,
    source: TrafficSource,
    evidence: ConsentEvidence,
) -> ConsentGrant:
    """Store a consent grant without its ledger entry: the caller must call ``log_grant``
    in the same transaction. Appending last keeps the ledger's sequence lock short.
    The grant has its subject's mode (a sandbox subject's consent was given through a
    sandbox key): only keys of that mode will reach it."""
    text = ConsentText.objects.filter(
        version=evidence.text_version, published_at__isnull=False
    ).first()
    if text is None:
        raise ConsentError(
            f"unknown or unpublished consent text version {evidence.text_version!r}",
            field="consent.text_version",
        )
    if evidence.expires_at <= evidence.collected_at:
        raise ConsentError(
            "expiry must be after the time consent was given", field="consent.expires_at"
        )
    if evidence.scope == GrantScope.NAMED_PARTNERS and not evidence.named_partner_ids:
        raise ConsentError(
            "named-partner consent must name at least one partner", field="consent.partner_ids"
        )
    grant = ConsentGrant.objects.create(
        subject=subject,
        source=source,
        text=text,
        text_sha256=text.sha256,
        scope=evidence.scope,
        purposes=list(evidence.purposes),
        data_categories=list(text.data_categories),
        method=evidence.method,
        channel=evidence.channel,
        collected_at=evidence.collected_at,
        ip_address=evidence.ip_address,
        user_agent=evidence.user_agent,
        expires_at=evidence.expires_at,
        is_sandbox=subject.is_sandbox,
    )
    _add_recipients(grant, evidence.named_partner_ids)
    return grant


def log_grant(*, grant: ConsentGrant, acting_key: dict[str, str] | None = None) -> None:
    """Append ``consent.granted``; ``acting_key``: the API key that sent the consent."""
    named = grant.scope == GrantScope.NAMED_PARTNERS
    ledger.append(
        kind="consent.granted",
        data=ledger.with_acting_key(
            {
                "receipt_id": str(grant.id),
                "subject_id": str(grant.subject_id),
                "source_id": str(grant.source_id),
                "text_version": grant.text.version,
                "text_sha256": grant.text_sha256,
                "scope": grant.scope,
                "recipients": sorted(str(p) for p in grant.recipients.values_list("id", flat=True))
                if named
                else [],
                "purposes": grant.purposes,
                "data_categories": grant.data_categories,
                "method": grant.method,
                "channel": grant.channel,
                "collected_at": grant.collected_at.isoformat(),
                "expires_at": grant.expires_at.isoformat(),
                # Evidence is personal data: the ledger commits to it without holding it.
                "evidence_sha256": sha256_text(f"{grant.ip_address or ''}\n{grant.user_agent}"),
            },
            acting_key,
        ),
    )


def _add_recipients(grant: ConsentGrant, partner_ids: Iterable[uuid.UUID]) -> None:
    through = ConsentGrant.recipients.through
    through.objects.bulk_create(
        [through(consentgrant_id=grant.id, partner_id=pid) for pid in partner_ids],
        ignore_conflicts=True,
    )


def add_matched_recipients(*, grant: ConsentGrant, partner_ids: Iterable[uuid.UUID]) -> None:
    """For 'matched partners' consent, extend the grant to the partners routing matched."""
    if grant.scope != GrantScope.MATCHED_PARTNERS:
        return
    _add_recipients(grant, partner_ids)


def allowed_recipient_ids(grant: ConsentGrant) -> set[uuid.UUID] | None:
    """Partners a grant names, or None when any matched partner may be added."""
    if grant.scope == GrantScope.MATCHED_PARTNERS:
        return None
    return set(grant.recipients.values_list("id", flat=True))


def is_active(grant: ConsentGrant, at: datetime | None = None) -> bool:
    at = at or timezone.now()
    return grant.expires_at > at and not ConsentWithdrawal.objects.filter(grant=grant).exists()


def withdraw(
    *,
    grant_id: uuid.UUID,
    channel: str,
    reason: str = "",
    acting_key: dict[str, str] | None = None,
    acting_user: dict[str, str] | None = None,
) -> ConsentWithdrawal:
    """Withdraw consent at once; withdrawing again returns the original withdrawal.

    Every partner that already received the data gets a deletion request and a signed
    ``consent.withdrawn`` webhook in the same transaction (see ``consent.deletion``).
    ``acting_key``: the API key that withdrew; ``acting_user``: the staff member who did in
    the admin (``{"id": ..., "username": ...}``); either is recorded in the ledger entry.
    """
    with transaction.atomic():
        # The gate locks the same row, so a disclosure either finishes first (and gets a
        # deletion request below) or sees this withdrawal and refuses.
        grant = ConsentGrant.objects.select_for_update().get(pk=grant_id)
        return withdraw_locked(
            grant=grant,
            channel=channel,
            reason=reason,
            acting_key=acting_key,
            acting_user=acting_user,
        )


def withdraw_locked(
    *,
    grant: ConsentGrant,
    channel: str,
    reason: str = "",
    acting_key: dict[str, str] | None = None,
    acting_user: dict[str, str] | None = None,
) -> ConsentWithdrawal:
    """``withdraw`` for a caller that already holds the grant's row lock in its transaction."""
    existing = ConsentWithdrawal.objects.filter(grant=grant).first()
    if existing is not None:
        return existing
    withdrawal = ConsentWithdrawal.objects.create(
        grant=grant, withdrawn_at=timezone.now(), channel=channel, reason=reason
    )
    requests = deletion.request_deletions(grant=grant, withdrawal=withdrawal)
    ledger.append(
        kind="consent.withdrawn",
        data=ledger.with_acting_key(
            {
                "withdrawal_id": withdrawal.id,
                "receipt_id": str(grant.id),
                "subject_id": str(grant.subject_id),
                "channel": channel,
                "withdrawn_at": withdrawal.withdrawn_at.isoformat(),
                **({"staff_user": dict(acting_user)} if acting_user else {}),
            },
            acting_key,
        ),
    )
    deletion.log_deletion_requests(grant=grant, requests=requests, acting_key=acting_key)
    return withdrawal


def recipients_of_new_grant(
    grant: ConsentGrant, *, evidence: ConsentEvidence, matched_partner_ids: Iterable[uuid.UUID]
) -> frozenset[uuid.UUID]:
    """The recipients of a grant made in the caller's open transaction, as this transaction
    gave them: the partners the evidence names (``create_grant``) and, for 'matched
    partners' scope, those routing added (``add_matched_recipients``)."""
    named = frozenset(evidence.named_partner_ids)
    if grant.scope == GrantScope.MATCHED_PARTNERS:
        return named | frozenset(matched_partner_ids)
    return named


def receipt(
    grant: ConsentGrant, *, new_grant_recipients: Iterable[uuid.UUID] | None = None
) -> dict[str, Any]:
    """A consent receipt shaped after the Kantara Consent Receipt / ISO/IEC TS 27560.

    ``new_grant_recipients``: for a grant the caller has just made (intake answering from
    memory), the recipients it gave it (``recipients_of_new_grant``): the receipt describes
    the grant as made, not withdrawn, and reads nothing. (A keyed intake answers inside its
    own transaction, where no one else can see the grant yet.)"""
    if new_grant_recipients is None:
        withdrawal = ConsentWithdrawal.objects.filter(grant=grant).first()
        recipients = list(grant.recipients.values_list("id", flat=True))
    else:
        withdrawal, recipients = None, list(new_grant_recipients)
    text = grant.text
    return {
        "version": "KI-CR-v1.1.0",
        "receipt_id": str(grant.id),
        "jurisdiction": text.jurisdiction,
        "consent_timestamp": grant.collected_at.isoformat(),
        "collection_method": grant.method,
        "channel": grant.channel,
        "language": text.language,
        "pii_principal_id": str(grant.subject_id),
        "pii_controller": {"source_id": str(grant.source_id), "name": grant.source.name},
        "notice": {"version": text.version, "sha256": grant.text_sha256, "title": text.title},
        "services": [
            {
                "purposes": grant.purposes,
                "pii_categories": grant.data_categories,
                "sharing": {
                    "scope": grant.scope,
                    "recipients": sorted(str(p) for p in recipients),
                },
            }
        ],
        "expires_at": grant.expires_at.isoformat(),
        "status": "withdrawn"
        if withdrawal
        else ("expired" if grant.expires_at <= timezone.now() else "active"),
        "withdrawn_at": withdrawal.withdrawn_at.isoformat() if withdrawal else None,
    }


def record_expiries(*, now: datetime | None = None, batch: int = 500) -> int:
    """Write ``consent.expired`` to the ledger, once, for every grant whose time ran out
    without a withdrawal. Expiry needs no action to take effect (the gate checks the time);
    this makes it part of the auditable history. Returns how many were recorded."""
    now = now or timezone.now()
    recorded = 0
    while True:
        with transaction.atomic():
            due = list(
                ConsentGrant.objects.select_for_update(skip_locked=True)
                .filter(expires_at__lte=now, expiry_logged_at__isnull=True)
                .order_by("expires_at")[:batch]
            )
            if not due:
                return recorded
            withdrawn = set(
                ConsentWithdrawal.objects.filter(grant__in=due).values_list("grant_id", flat=True)
            )
            for grant in due:
                if grant.id not in withdrawn:
                    ledger.append(
                        kind="consent.expired",
                        data={
                            "receipt_id": str(grant.id),
                            "subject_id": str(grant.subject_id),
                            "expired_at": grant.expires_at.isoformat(),
                        },
                    )
                    recorded += 1
            ConsentGrant.objects.filter(pk__in=[g.pk for g in due]).update(expiry_logged_at=now)
