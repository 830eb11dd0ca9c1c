"""Withdrawal reaches every recipient: deletion requests to partners and their acknowledgements.

When consent is withdrawn, every partner that received the applicant's data under that grant
(a ``Disclosure`` row) gets a ``DeletionRequest`` and a signed ``consent.withdrawn`` webhook,
in the withdrawal's own transaction. The grant row is locked by then (see
``grants.withdraw``), and the gate locks it too before it discloses: so every disclosure
either committed before we read them here, or is refused. A post can therefore never reach a
partner after a withdrawal without that partner also being asked to delete.

Partners acknowledge through ``POST /api/v1/partner/consent-withdrawals/{id}/ack``; the
first acknowledgement is kept and appended to the ledger once.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from consent import ledger
from consent.models import ConsentGrant, ConsentWithdrawal, DeletionRequest, Disclosure
from partners import webhook_delivery

WEBHOOK_EVENT = "consent.withdrawn"
LEAD_REFERENCE_PREFIX = "lead:"


class AcknowledgementError(ValueError):
    """An acknowledgement that does not match its request; ``field`` names the input."""

    def __init__(self, message: str, *, field: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class Acknowledgement:
    request: DeletionRequest
    created: bool  # False when the request had been acknowledged before


def ack_days() -> int:
    return int(settings.DELETION_ACK_DAYS)


def _lead_ids(references: list[str]) -> list[str]:
    return sorted(
        {ref[len(LEAD_REFERENCE_PREFIX) :] for ref in references if ref.startswith("lead:")}
    )


def request_deletions(
    *, grant: ConsentGrant, withdrawal: ConsentWithdrawal
) -> list[DeletionRequest]:
    """One deletion request and webhook per partner that received data under ``grant``.

    The caller holds the grant's row lock and the transaction; ledger entries are appended
    last by ``log_deletion_requests`` (the ledger's sequence lock stays short).
    """
    references: dict[uuid.UUID, list[str]] = {}
    for partner_id, reference in Disclosure.objects.filter(grant=grant).values_list(
        "partner_id", "reference"
    ):
        references.setdefault(partner_id, []).append(reference)
    requested_at = withdrawal.withdrawn_at
    due_at = requested_at + timedelta(days=ack_days())
    made = []
    for partner_id in sorted(references, key=str):
        request = DeletionRequest.objects.create(
            withdrawal=withdrawal,
            partner_id=partner_id,
            lead_ids=_lead_ids(references[partner_id]),
            requested_at=requested_at,
            due_at=due_at,
        )
        webhook_delivery.enqueue(
            partner_id=partner_id,
            event_type=WEBHOOK_EVENT,
            data=webhook_data(request, grant_id=grant.id),
            dedupe_key=f"{WEBHOOK_EVENT}:{withdrawal.id}",
            # The request is in the grant's mode: its webhook message too.
            is_sandbox=grant.is_sandbox,
        )
        made.append(request)
    return made


def webhook_data(request: DeletionRequest, *, grant_id: uuid.UUID) -> dict[str, object]:
    """What the partner is told: ids and times only, never personal data."""
    return {
        "withdrawal_id": request.withdrawal_id,
        "receipt_id": str(grant_id),
        "lead_ids": list(request.lead_ids),
        "requested_at": request.requested_at.isoformat(),
        "due_at": request.due_at.isoformat(),
    }


def log_deletion_requests(
    *,
    grant: ConsentGrant,
    requests: list[DeletionRequest],
    acting_key: dict[str, str] | None = None,
) -> None:
    """``acting_key``: the API key whose withdrawal caused the requests, if one did."""
    for request in requests:
        ledger.append(
            kind="deletion.requested",
            data=ledger.with_acting_key(
                {
                    "deletion_request_id": str(request.id),
                    "withdrawal_id": request.withdrawal_id,
                    "receipt_id": str(grant.id),
                    "subject_id": str(grant.subject_id),
                    "partner_id": str(request.partner_id),
                    "lead_ids": list(request.lead_ids),
                    "requested_at": request.requested_at.isoformat(),
                    "due_at": request.due_at.isoformat(),
                },
                acting_key,
            ),
            at=request.requested_at,
        )


def acknowledge(
    *,
    withdrawal_id: int,
    partner_id: uuid.UUID,
    lead_ids: list[str] | None = None,
    partner_acknowledged_at: datetime | None = None,
    is_sandbox: bool | None = None,
    acting_key: dict[str, str] | None = None,
    acting_user: dict[str, str] | None = None,
) -> Acknowledgement:
    """Record the partner's confirmation that it deleted the data; again is a no-op.

    Raises ``DeletionRequest.DoesNotExist`` for another partner's or an unknown withdrawal,
    and, when ``is_sandbox`` is given, for one of the other mode (the grant's). ``acting_key``:
    the API key that acknowledged; ``acting_user``: the partner's staff user who did in the
    partner portal (``{"id": ..., "username": ...}``); either is recorded in the ledger entry.
    """
    mode = {} if is_sandbox is None else {"withdrawal__grant__is_sandbox": is_sandbox}
    with transaction.atomic():
        request = (
            DeletionRequest.objects.select_for_update(of=("self",))
            .select_related("withdrawal")
            .get(withdrawal_id=withdrawal_id, partner_id=partner_id, **mode)
        )
        if request.acknowledged_at is not None:
            return Acknowledgement(request=request, created=False)
        if lead_ids is not None and sorted(set(lead_ids)) != sorted(request.lead_ids):
            raise AcknowledgementError(
                "lead_ids must list exactly the leads of this deletion request", field="lead_ids"
            )
        request.acknowledged_at = timezone.now()
        request.partner_acknowledged_at = partner_acknowledged_at
        request.save(update_fields=["acknowledged_at", "partner_acknowledged_at"])
        ledger.append(
            kind="deletion.acknowledged",
            data=ledger.with_acting_key(
                {
                    "deletion_request_id": str(request.id),
                    "withdrawal_id": request.withdrawal_id,
                    "receipt_id": str(request.withdrawal.grant_id),
                    "partner_id": str(partner_id),
                    "acknowledged_at": request.acknowledged_at.isoformat(),
                    "partner_acknowledged_at": partner_acknowledged_at.isoformat()
                    if partner_acknowledged_at
                    else None,
                    **({"staff_user": dict(acting_user)} if acting_user else {}),
                },
                acting_key,
            ),
            at=request.acknowledged_at,
        )
        return Acknowledgement(request=request, created=True)


# --- Selectors -------------------------------------------------------------------------------


def outstanding(queryset: QuerySet[DeletionRequest]) -> QuerySet[DeletionRequest]:
    return queryset.filter(acknowledged_at__isnull=True)


def overdue(
    queryset: QuerySet[DeletionRequest], at: datetime | None = None
) -> QuerySet[DeletionRequest]:
    return queryset.filter(acknowledged_at__isnull=True, due_at__lt=at or timezone.now())


def status_of(request: DeletionRequest, at: datetime | None = None) -> str:
    if request.acknowledged_at is not None:
        return "acknowledged"
    return "overdue" if request.due_at < (at or timezone.now()) else "outstanding"
