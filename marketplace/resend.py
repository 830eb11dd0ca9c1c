"""A failed lead post sent again at the partner's request (the partner portal's delivery
log), through the same path as every post: a ``deliver_lead`` message in the outbox, run
under a claim by ``marketplace.delivery.deliver``, whose consent gate decides at the
moment of posting whether the applicant's data may leave the vault at all (a withdrawn
or expired consent: the lead is blocked, nothing is sent).

Sent again only when that cannot give the partner something it holds already or that is
no longer its: the lead's posts failed (``delivery_failed``: not rejected by the partner,
not blocked by consent, not delivered), no attempt was ever answered with a 2xx (the
partner may have kept the data then, whatever we made of its answer), and no other
partner took its place (an auction's next bidder or a waterfall's next candidate, made
after the first post failed). A re-send still queued is not queued twice.
"""

from __future__ import annotations

import uuid

from django.db import transaction

from marketplace import caps, outbox, tasks
from marketplace.models import DeliveryAttempt, Lead, LeadStatus, OutboxMessage


class ResendRefused(ValueError):
    """The lead cannot be posted again (the message says why, for the partner)."""


def refusal(lead: Lead) -> str | None:
    """Why ``lead`` cannot be sent again, or None when it can."""
    if lead.status != LeadStatus.DELIVERY_FAILED:
        return f"Only a lead whose post failed can be sent again (this one is {lead.status})."
    answered = DeliveryAttempt.objects.filter(
        lead_id=lead.pk, http_status__gte=200, http_status__lt=300
    )
    if lead.delivered_at is not None or answered.exists():
        return "You answered a post of this lead with a 2xx: you may hold it already."
    first = DeliveryAttempt.objects.filter(lead_id=lead.pk).order_by("started_at").first()
    if first is not None and (
        Lead.objects.filter(referral_id=lead.referral_id, created_at__gt=first.started_at)
        .exclude(pk=lead.pk)
        .exists()
    ):
        return "Another partner was offered this lead after its post to you failed."
    if _queued(lead.pk):
        return "This lead is queued to be sent again already."
    return None


def _queued(lead_id: uuid.UUID) -> bool:
    return OutboxMessage.objects.filter(
        task=tasks.deliver_lead.name, args=[str(lead_id)], done_at__isnull=True
    ).exists()


def resend(*, lead_id: uuid.UUID) -> Lead:
    """Queue the lead's post again (``ResendRefused`` when it may not be); the caller
    scopes ``lead_id`` to the partner asking. The lead's row is locked while deciding, so
    two requests at once queue one post."""
    with transaction.atomic():
        lead = Lead.objects.select_for_update(no_key=True, of=("self",)).get(pk=lead_id)
        why = refusal(lead)
        if why is not None:
            raise ResendRefused(why)
        # Its failed award gave back its caps and budget: it takes them again, or waits.
        if not caps.take_again(lead=lead):
            raise ResendRefused("The product's lead cap or your budget has no room for it now.")
        outbox.enqueue(tasks.deliver_lead, str(lead.pk), referral_id=lead.referral_id)
    return lead
