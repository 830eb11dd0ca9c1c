"""The consent gate: the only way personal data leaves the vault, through two doors.

``disclose`` (to a partner) checks that a grant covers this partner, purpose and moment,
decrypts the requested fields and writes the disclosure log and a ledger entry in one
transaction. ``reveal`` (to a staff member) needs the ``consent.reveal_subject``
permission and a reason, and records a ``RevealRecord`` and a ``data.revealed`` ledger
entry in the same transaction as the decryption. If anything fails, nothing is returned
and nothing is logged. Nothing else calls the vault's decryption.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from datetime import datetime

from django.contrib.auth.models import User
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.utils import timezone

from consent import ledger, vault
from consent.models import (
    PII_FIELDS,
    ConsentGrant,
    ConsentWithdrawal,
    Disclosure,
    RevealRecord,
    Subject,
)


class DisclosureRefused(Exception):
    """Consent does not allow this disclosure; ``code`` says why (no personal data)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Disclosed:
    disclosure_id: uuid.UUID
    data: dict[str, str]


def disclose(
    *,
    grant_id: uuid.UUID,
    partner_id: uuid.UUID,
    purpose: str,
    reference: str,
    fields: tuple[str, ...] = PII_FIELDS,
    acting_key: dict[str, str] | None = None,
) -> Disclosed:
    unknown = set(fields) - set(PII_FIELDS)
    if unknown:
        raise ValueError(f"unknown personal-data fields: {sorted(unknown)}")
    with transaction.atomic():
        # Lock the grant: a concurrent withdrawal waits for us or we see it (no race).
        grant = (
            ConsentGrant.objects.select_for_update(of=("self",))
            .select_related("subject")
            .get(pk=grant_id)
        )
        now = timezone.now()
        # Erasure withdraws every grant too; naming the erasure says more than the withdrawal.
        if grant.subject.erased_at is not None:
            raise DisclosureRefused("subject_erased", "the subject's data was erased")
        if ConsentWithdrawal.objects.filter(grant=grant).exists():
            raise DisclosureRefused("consent_withdrawn", "consent was withdrawn")
        if grant.expires_at <= now:
            raise DisclosureRefused("consent_expired", "consent has expired")
        if purpose not in grant.purposes:
            raise DisclosureRefused("purpose_not_consented", f"purpose {purpose!r} not consented")
        if not grant.recipients.filter(pk=partner_id).exists():
            raise DisclosureRefused("partner_not_in_scope", "partner is not a consented recipient")
        subject = grant.subject
        data = vault._decrypt(subject, fields)
        disclosure = Disclosure.objects.create(
            grant=grant,
            subject=subject,
            partner_id=partner_id,
            fields=list(fields),
            purpose=purpose,
            reference=reference,
            disclosed_at=now,
        )
        ledger.append(
            kind="data.disclosed",
            data=ledger.with_acting_key(
                {
                    "disclosure_id": str(disclosure.id),
                    "receipt_id": str(grant.id),
                    "subject_id": str(subject.id),
                    "partner_id": str(partner_id),
                    "fields": list(fields),
                    "purpose": purpose,
                    "reference": reference,
                },
                acting_key,
            ),
            at=now,
        )
        return Disclosed(disclosure_id=disclosure.id, data=data)


def disclosed_at(
    *, subject_id: uuid.UUID, partner_id: uuid.UUID, reference: str
) -> datetime | None:
    """When this subject's data was first disclosed to this partner for ``reference`` (a
    lead's post: ``lead:<id>``), or None if never. The log is written, and committed,
    before the data leaves: a disclosure here means the data was sent, or about to be."""
    first: datetime | None = (
        Disclosure.objects.filter(subject_id=subject_id, partner_id=partner_id, reference=reference)
        .order_by("disclosed_at")
        .values_list("disclosed_at", flat=True)
        .first()
    )
    return first


REVEAL_PERMISSION = "consent.reveal_subject"
MIN_REASON_LENGTH = 10


class RevealRefused(ValueError):
    """A reveal that cannot be done; ``code`` says why (no personal data in the message)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def reveal(
    *, subject_id: uuid.UUID, user: User, fields: tuple[str, ...], reason: str
) -> dict[str, str]:
    """Decrypt a subject's fields for a staff member, logging who, what and why first."""
    if not user.has_perm(REVEAL_PERMISSION):
        raise PermissionDenied("revealing personal data needs the reveal_subject permission")
    reason = reason.strip()
    if len(reason) < MIN_REASON_LENGTH:
        raise RevealRefused(
            "reason_required", f"give a reason of at least {MIN_REASON_LENGTH} characters"
        )
    if not fields:
        raise RevealRefused("no_fields", "choose at least one field to reveal")
    unknown = set(fields) - set(PII_FIELDS)
    if unknown:
        raise RevealRefused("unknown_fields", f"unknown fields: {sorted(unknown)}")
    ordered = tuple(name for name in PII_FIELDS if name in fields)
    with transaction.atomic():
        # Locked: an erasure running now either finishes first (and we refuse) or waits.
        subject = Subject.objects.select_for_update().get(pk=subject_id)
        if subject.erased_at is not None or subject.wrapped_key is None:
            raise RevealRefused("subject_erased", "the subject's data was erased")
        data = vault._decrypt(subject, ordered)
        now = timezone.now()
        record = RevealRecord.objects.create(
            user=user, subject=subject, fields=list(ordered), reason=reason, revealed_at=now
        )
        ledger.append(
            kind="data.revealed",
            data={
                "reveal_id": str(record.id),
                "subject_id": str(subject.id),
                "user_id": user.pk,
                "fields": list(ordered),
                "reason_sha256": hashlib.sha256(reason.encode()).hexdigest(),
            },
            at=now,
        )
    return data
