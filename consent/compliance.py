"""What a compliance officer sees: a subject's consent history, and revealing data on purpose.

``find_subjects`` matches a typed phone number or ID number through the blind index (no
decryption), in both key modes: a sandbox subject (test traffic that carried a real
person's numbers) is still that person's data, so an officer answering an access or
erasure request must see it, labelled as sandbox, after the live one. ``subject_history``
gathers everything recorded about a subject without any of its personal data: grants (with
the text version and hash), withdrawals, disclosures, deletion requests and
acknowledgements, erasure and earlier reveals. Staff see decrypted data only through the gate
(``consent.gate.reveal``).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from django.utils import timezone

from consent import deletion, vault
from consent.models import (
    ConsentGrant,
    ConsentWithdrawal,
    DeletionRequest,
    Disclosure,
    RevealRecord,
    Subject,
)


@dataclass(frozen=True)
class DeletionRequestView:
    request: DeletionRequest
    status: str


@dataclass(frozen=True)
class GrantHistory:
    grant: ConsentGrant
    status: str
    withdrawal: ConsentWithdrawal | None
    disclosures: list[Disclosure] = field(default_factory=list)
    deletion_requests: list[DeletionRequestView] = field(default_factory=list)


@dataclass(frozen=True)
class SubjectHistory:
    subject: Subject
    grants: list[GrantHistory]
    reveals: list[RevealRecord]


def find_subjects(*, phone: str = "", national_id: str = "") -> list[uuid.UUID]:
    """Subjects whose blind index matches, live ones first, then sandbox ones; an empty
    query finds nobody."""
    if not phone.strip() and not national_id.strip():
        return []
    return vault.find_subject_ids(
        phone=phone.strip(), national_id=national_id.strip(), is_sandbox=None
    )


def subject_history(*, subject_id: uuid.UUID) -> SubjectHistory:
    """The full consent history of one subject, without any of its personal data."""
    subject = Subject.objects.only(
        "id", "key_id", "created_at", "erased_at", "erased_by", "is_sandbox"
    ).get(pk=subject_id)
    subject_grants = list(
        ConsentGrant.objects.filter(subject_id=subject_id)
        .select_related("text", "source")
        .prefetch_related("recipients")
        .order_by("collected_at", "id")
    )
    withdrawals = {
        w.grant_id: w for w in ConsentWithdrawal.objects.filter(grant__in=subject_grants)
    }
    disclosures: dict[uuid.UUID, list[Disclosure]] = {}
    for disclosure in (
        Disclosure.objects.filter(subject_id=subject_id)
        .select_related("partner")
        .order_by("disclosed_at")
    ):
        disclosures.setdefault(disclosure.grant_id, []).append(disclosure)
    requests: dict[uuid.UUID, list[DeletionRequestView]] = {}
    now = timezone.now()
    for request in (
        DeletionRequest.objects.filter(withdrawal__grant__subject_id=subject_id)
        .select_related("partner", "withdrawal")
        .order_by("requested_at", "partner__name")
    ):
        requests.setdefault(request.withdrawal.grant_id, []).append(
            DeletionRequestView(request=request, status=deletion.status_of(request, now))
        )
    history = []
    for grant in subject_grants:
        withdrawal = withdrawals.get(grant.id)
        if withdrawal is not None:
            status = "withdrawn"
        elif grant.expires_at <= now:
            status = "expired"
        else:
            status = "active"
        history.append(
            GrantHistory(
                grant=grant,
                status=status,
                withdrawal=withdrawal,
                disclosures=disclosures.get(grant.id, []),
                deletion_requests=requests.get(grant.id, []),
            )
        )
    reveals = list(RevealRecord.objects.filter(subject_id=subject_id).select_related("user"))
    return SubjectHistory(subject=subject, grants=history, reveals=reveals)
