"""Returns: which return credits a lead, return-rate caps and finance's review.

Marketplace stores a return only inside the window (``marketplace.events``); billing then
decides whether it credits the lead:

- an unknown reason code (not a ``ReturnReason``) always waits for finance, whichever
  path brings the return to billing (live, or the catch-up charger after an outage);
- a return judged on the live path also waits when it comes from a partner whose returns
  over the last 30 days exceed its cap (default 15% of the leads delivered to it in that
  time, counting this one) once it had at least ``MIN_LEADS_FOR_CAP`` leads in the window
  (below that one return is a large share);
- the lead's *crediting return* is its first standing return (by occurred_at, then the
  partner's event id): not reversed, and either never sent to review or approved there. A
  first standing return that waits or was rejected credits nothing, and no later return
  credits instead of it. Reversing the crediting return makes the next standing return
  the first one.

Charging (``billing.charging``) credits every open charge of a lead that has a crediting
return, and books again what a reversed return had credited.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from datetime import timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings

from billing.models import PartnerBillingProfile, ReturnReason, ReturnReview, ReviewStatus
from marketplace.events import standing
from marketplace.models import EventType, Lead, LeadEvent

CAP_WINDOW = timedelta(days=30)
KNOWN_REASONS = frozenset(ReturnReason.values)
MIN_LEADS_FOR_CAP = 20


def code(event: LeadEvent) -> str:
    """The reason code a credit carries (unknown codes, once approved, as ``other``)."""
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


def review_return(*, event: LeadEvent) -> ReturnReview | None:
    """Judge a return as it is reported: open a review when it must wait (called in the
    event's transaction); None when it may credit at once. The reason code is judged on
    every path; the return-rate cap when the return reaches billing on the live path
    (the partner's rate when it returned the lead)."""
    existing = ReturnReview.objects.filter(event=event).first()
    if existing is not None:
        return existing
    lead = event.lead
    why = ""
    rate, delivered = return_rate(partner_id=lead.partner_id, at=event.occurred_at)
    if event.reason not in ReturnReason.values:
        why = f"unknown reason code {event.reason[:40]!r}"
    elif delivered >= MIN_LEADS_FOR_CAP and rate > (cap := return_rate_cap(lead.partner_id)):
        why = f"return rate {rate:.2%} over the last 30 days is above the cap of {cap:.2%}"
    if not why:
        return None
    review, _ = ReturnReview.objects.get_or_create(
        event=event,
        defaults=dict(
            partner_id=lead.partner_id,
            lead=lead,
            reason_code=event.reason[:80],
            return_rate=min(rate, Decimal("9.9999")),
            why=why,
        ),
    )
    return review


def first_standing_return(events: Iterable[LeadEvent]) -> LeadEvent | None:
    returns = [e for e in standing(list(events)) if e.type == EventType.RETURNED]
    return min(returns, key=lambda e: (e.occurred_at, e.external_id), default=None)


def crediting_return(
    events: Iterable[LeadEvent], *, statuses: Mapping[uuid.UUID, str] | None = None
) -> LeadEvent | None:
    """The return that credits the lead now, from all of the lead's events; ``statuses``:
    the review status of each of its returns sent to review, when the caller read them."""
    first = first_standing_return(events)
    if first is None:
        return None
    if statuses is not None:
        status = statuses.get(first.pk)
    else:
        status = ReturnReview.objects.filter(event=first).values_list("status", flat=True).first()
    if status is not None and status != ReviewStatus.APPROVED:
        return None
    return first
