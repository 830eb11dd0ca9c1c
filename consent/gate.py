"""The consent gate: the only way personal data leaves the vault.

``disclose`` checks that a grant covers this partner, purpose and moment, decrypts the
requested fields and writes the disclosure log and a ledger entry in one transaction. If
anything fails, nothing is returned and nothing is logged.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from django.db import transaction
from django.utils import timezone

from consent import ledger, vault
from consent.models import PII_FIELDS, ConsentGrant, ConsentWithdrawal, Disclosure


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
