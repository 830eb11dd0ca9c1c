"""What a compliance officer sees: a subject's consent history, and revealing data on purpose.

``find_subjects`` matches a typed phone number or ID number through the blind index (no
decryption), in both key modes: a sandbox subject (test traffic that carried a real
person's numbers) is still that person's data, so an officer answering an access or
erasure request must see it, labelled as sandbox, after the live one. ``subject_history``
gathers everything recorded about a subject without any of its personal data: grants (with
the text version and hash), withdrawals, disclosures, deletion requests and
acknowledgements, erasure and earlier reveals. Staff see decrypted data only through the gate
(``consent.gate.reveal``).

An officer may start from an id instead of a number: a consent receipt id (a grant, ours)
or the id of a record another app keeps about the subject (a referral, marketplace's).
Consent cannot import those apps (they sit above it), so each registers a resolver from its
ids to subject ids (:func:`register_subject_resolver`, from its ``AppConfig.ready``).
``ledger_key`` is the checkpoint key as auditors compare it: in full, with its fingerprint.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from django.utils import timezone

from consent import deletion, ledger, vault
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


# A record kind another app keeps ("referral") -> its id to the subject's id, or None.
SubjectResolver = Callable[[uuid.UUID], uuid.UUID | None]
RECEIPT = "consent receipt"
_resolvers: dict[str, SubjectResolver] = {}


def register_subject_resolver(*, kind: str, resolve: SubjectResolver) -> None:
    """Make ids of ``kind`` records searchable by compliance (``resolve`` reads no personal
    data: ids only). Registering a kind again replaces its resolver."""
    if kind == RECEIPT:
        raise ValueError("consent receipts are consent's own kind")
    _resolvers[kind] = resolve


def reference_kinds() -> list[str]:
    """The kinds of ids the search understands, consent receipts first."""
    return [RECEIPT, *sorted(_resolvers)]


@dataclass(frozen=True)
class ReferenceMatch:
    kind: str
    subject_id: uuid.UUID


def find_by_reference(*, reference: uuid.UUID) -> list[ReferenceMatch]:
    """Each kind of record with this id and the subject it is about (none: nobody has it)."""
    found = []
    grant_subject = (
        ConsentGrant.objects.filter(pk=reference).values_list("subject_id", flat=True).first()
    )
    if grant_subject is not None:
        found.append(ReferenceMatch(RECEIPT, grant_subject))
    for kind in sorted(_resolvers):
        subject_id = _resolvers[kind](reference)
        if subject_id is not None:
            found.append(ReferenceMatch(kind, subject_id))
    return found


@dataclass(frozen=True)
class LedgerKey:
    public_key: str  # base64 of the raw 32-byte Ed25519 key (what --public-key takes)
    public_key_hex: str
    fingerprint: str  # SHA-256 of the raw key bytes, hex in groups of four (the key_id)


def ledger_key() -> LedgerKey:
    raw = ledger.public_key_bytes()
    key_id = ledger.public_key_id()
    return LedgerKey(
        public_key=base64.b64encode(raw).decode(),
        public_key_hex=raw.hex(),
        fingerprint=" ".join(key_id[i : i + 4] for i in range(0, len(key_id), 4)),
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
