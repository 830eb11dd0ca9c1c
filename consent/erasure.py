"""Erasure by crypto-shredding: destroy the subject's data key so nothing can be decrypted.

In one transaction: every grant of the subject not yet withdrawn is withdrawn (erasure
implies withdrawal, so every partner that received the data is asked to delete it), the
wrapped data key is set to NULL, the ciphertexts are emptied, both blind indexes are replaced
by a value that links to no person, and ``subject.erased`` is appended to the ledger.
Referrals, leads, charges and the ledger stay: they hold no personal data, and the ledger
keeps proving what happened. The reason staff give is kept only as a SHA-256: it is free
text and may name the person.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass, field

from django.db import transaction
from django.utils import timezone

from consent import grants, ledger
from consent.models import PII_FIELDS, ConsentGrant, ConsentWithdrawal, Subject

ERASURE_CHANNEL = "erasure"


class ErasureError(ValueError):
    """An erasure request that cannot be carried out (the message holds no personal data)."""


@dataclass(frozen=True)
class Erasure:
    subject: Subject
    erased: bool  # False: the subject had been erased before, nothing was done
    withdrawals: list[ConsentWithdrawal] = field(default_factory=list)


def erased_marker(subject_id: uuid.UUID) -> str:
    """What replaces a blind index: unique per subject, derived from no personal value."""
    return f"erased:{subject_id}"


def erase_subject(*, subject_id: uuid.UUID, reason: str, erased_by: str) -> Erasure:
    """Crypto-shred one subject; erasing again is a no-op."""
    reason = reason.strip()
    if not reason:
        raise ErasureError("a reason is required to erase a subject")
    with transaction.atomic():
        # Lock order subject -> grants, as intake (subject) and the gate (grant) take them.
        subject = Subject.objects.select_for_update().get(pk=subject_id)
        if subject.erased_at is not None:
            return Erasure(subject=subject, erased=False)
        subject_grants = list(
            ConsentGrant.objects.select_for_update().filter(subject=subject).order_by("id")
        )
        withdrawn = set(
            ConsentWithdrawal.objects.filter(grant__in=subject_grants).values_list(
                "grant_id", flat=True
            )
        )
        now = timezone.now()
        marker = erased_marker(subject.id)
        shredded: dict[str, object] = {f"{name}_enc": b"" for name in PII_FIELDS}
        Subject.objects.filter(pk=subject.pk).update(
            wrapped_key=None,
            national_id_index=marker,
            phone_index=marker,
            erased_at=now,
            erased_by=erased_by[:150],
            erasure_reason_sha256=hashlib.sha256(reason.encode()).hexdigest(),
            updated_at=now,
            **shredded,
        )
        # Grants still open are withdrawn: their recipients get deletion requests too.
        withdrawals = [
            grants.withdraw_locked(grant=grant, channel=ERASURE_CHANNEL, reason="subject erased")
            for grant in subject_grants
            if grant.id not in withdrawn
        ]
        ledger.append(
            kind="subject.erased",
            data={
                "subject_id": str(subject.id),
                "erased_at": now.isoformat(),
                "reason_sha256": hashlib.sha256(reason.encode()).hexdigest(),
                "withdrawn_receipt_ids": sorted(str(w.grant_id) for w in withdrawals),
            },
            at=now,
        )
        subject.refresh_from_db()
        return Erasure(subject=subject, erased=True, withdrawals=withdrawals)
