"""Returns: credits with their reason code, return-rate caps and finance's review.

Marketplace stores a return only inside the window (``marketplace.events``); billing then
decides whether it is credited now or waits for approval:

- an unknown reason code (not a ``ReturnReason``) waits: the event is stored already, and
  refusing it here would lose the partner's report;
- a partner whose returns over the last 30 days exceed its cap (default 15% of the leads
  delivered to it in that time, counting this one) waits, once it had at least
  ``MIN_LEADS_FOR_CAP`` leads in the window (below that one return is a large share);
- otherwise every charge on the lead is credited at once.

Only a lead's first return counts; later ones credit nothing more.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from billing.models import (
    Charge,
    EntryType,
    PartnerBillingProfile,
    ReturnReason,
    ReturnReview,
    ReviewStatus,
)
from marketplace.models import EventType, Lead, LeadEvent

CAP_WINDOW = timedelta(days=30)
MIN_LEADS_FOR_CAP = 20


class ReturnReviewError(ValueError):
    pass


def code(event: LeadEvent) -> str:
    """The reason code a credit carries (unknown codes are credited as ``other``)."""
    return event.reason if event.reason in ReturnReason.values else ReturnReason.OTHER


def return_rate_cap(partner_id: Any) -> Decimal:
    profile = PartnerBillingProfile.objects.filter(partner_id=partner_id).first()
    if profile is not None and profile.return_rate_cap is not None:
        return profile.return_rate_cap
    return Decimal(str(settings.RETURN_RATE_CAP))


def return_rate(*, partner_id: Any, at: Any) -> tuple[Decimal, int]:
    """(returned leads / delivered leads, delivered leads) over the window before ``at``."""
    since = at - CAP_WINDOW
    delivered = Lead.objects.filter(
        partner_id=partner_id,
        is_sandbox=False,
        delivered_at__gte=since,
        delivered_at__lte=at,
    ).count()
    returned = (
        LeadEvent.objects.filter(
            partner_id=partner_id,
            type=EventType.RETURNED,
            lead__is_sandbox=False,
            occurred_at__gte=since,
            occurred_at__lte=at,
        )
        .values("lead_id")
        .distinct()
        .count()
    )
    if delivered == 0:
        return Decimal(1), 0
    return (Decimal(returned) / Decimal(delivered)).quantize(Decimal("0.0001")), delivered


def _first_return(lead: Lead) -> LeadEvent | None:
    return (
        LeadEvent.objects.filter(lead=lead, type=EventType.RETURNED)
        .order_by("occurred_at", "received_at", "id")
        .first()
    )


def creditable_return(lead: Lead) -> LeadEvent | None:
    """The lead's return whose credit is due: its first, unless it awaits or was refused
    approval."""
    first = _first_return(lead)
    if first is None:
        return None
    review = ReturnReview.objects.filter(event=first).first()
    if review is not None and review.status != ReviewStatus.APPROVED:
        return None
    return first


def _credit_all(lead: Lead, returned: LeadEvent) -> list[Charge]:
    from billing.charging import correct

    made = []
    for charge in Charge.objects.filter(lead=lead, entry_type=EntryType.CHARGE):
        fix = correct(charge, event=returned, entry_type=EntryType.CREDIT, reason=code(returned))
        if fix is not None:
            made.append(fix)
    return made


def apply_return(*, event: LeadEvent) -> list[Charge]:
    """Credit the lead now, or open a review (called in the event's transaction)."""
    lead = event.lead
    if _first_return(lead) != event:
        return []  # a later return of a lead already returned credits nothing more
    why = ""
    rate, delivered = return_rate(partner_id=lead.partner_id, at=event.occurred_at)
    if event.reason not in ReturnReason.values:
        why = f"unknown reason code {event.reason[:40]!r}"
    elif delivered >= MIN_LEADS_FOR_CAP and rate > (cap := return_rate_cap(lead.partner_id)):
        why = f"return rate {rate:.2%} over the last 30 days is above the cap of {cap:.2%}"
    if why:
        ReturnReview.objects.get_or_create(
            event=event,
            defaults=dict(
                partner_id=lead.partner_id,
                lead=lead,
                reason_code=event.reason[:80],
                return_rate=min(rate, Decimal("9.9999")),
                why=why,
            ),
        )
        return []
    return _credit_all(lead, event)


def decide_return(
    *, review_id: uuid.UUID, approve: bool, user: Any = None, note: str = ""
) -> list[Charge]:
    """Approve (credit every charge on the lead) or reject a pending return; deciding a
    decided review again changes nothing."""
    with transaction.atomic():
        review = ReturnReview.objects.select_related("event").get(pk=review_id)
        # The lock record_event holds: a charge arriving while we approve waits, then
        # sees the approval and is credited at once.
        lead = Lead.objects.select_for_update().get(pk=review.lead_id)
        updated = ReturnReview.objects.filter(pk=review_id, status=ReviewStatus.PENDING).update(
            status=ReviewStatus.APPROVED if approve else ReviewStatus.REJECTED,
            decided_at=timezone.now(),
            decided_by=user if getattr(user, "pk", None) else None,
            note=note[:200],
        )
        if not updated or not approve:
            return []
        made = _credit_all(lead, review.event)
        if made:
            from billing.credit import evaluate_credit_limit

            evaluate_credit_limit(partner_id=lead.partner_id)
        return made
