"""Leads a partner pulls through the API instead of receiving a post."""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from consent.gate import disclose
from marketplace.delivery import REFERRAL_PURPOSE, notify_delivered
from marketplace.models import REPORTABLE_STATUSES, Lead, LeadStatus


def applicant_for_partner(
    *, lead: Lead, acting_key: dict[str, str] | None = None
) -> dict[str, str] | None:
    """The applicant's personal data for the partner that holds this lead, through the
    consent gate (which logs the disclosure, with ``acting_key``: the API key that read).
    A pull-mode lead counts as delivered the first time its partner reads it. None when
    the lead was never the partner's to read."""
    if lead.status not in REPORTABLE_STATUSES and lead.status != LeadStatus.AVAILABLE:
        return None
    assert lead.referral.grant_id is not None
    with transaction.atomic():
        disclosed = disclose(
            grant_id=lead.referral.grant_id,
            partner_id=lead.partner_id,
            purpose=REFERRAL_PURPOSE,
            reference=f"lead:{lead.id}",
            acting_key=acting_key,
        )
        if lead.status == LeadStatus.AVAILABLE:
            now = timezone.now()
            moved = Lead.objects.filter(pk=lead.pk, status=LeadStatus.AVAILABLE).update(
                status=LeadStatus.DELIVERED, delivered_at=now, updated_at=now
            )
            if moved:  # the first read only, whatever concurrent reads do
                notify_delivered(lead=lead, delivered_at=now)
            lead.status, lead.delivered_at = LeadStatus.DELIVERED, now
    return disclosed.data
