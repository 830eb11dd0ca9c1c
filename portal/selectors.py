"""Every portal query starts here: the rows of the picked partner, in the portal's mode.

Each selector scopes through ``partners.scoping.visible_to`` (the partners granted to the
user, as in the admin), then narrows to the partner picked and splits by mode as the API
does for keys: traffic by its own sandbox flag, billing live only, configuration (keys,
webhook endpoints) the same in both modes. An object outside them is a 404 to the views.
"""

from __future__ import annotations

from typing import TypeVar

from django.db.models import Model, QuerySet

from billing.models import CreditNote, Invoice, InvoiceStatus, Payment, ReturnReview
from consent.models import DeletionRequest
from marketplace.models import DeliveryAttempt, EventType, Lead, LeadEvent
from partners.models import ApiKey, KeyKind, WebhookEndpoint, WebhookMessage
from partners.scoping import visible_to
from portal.access import Portal

M = TypeVar("M", bound=Model)


def leads(portal: Portal) -> QuerySet[Lead]:
    return visible_to(
        Lead.objects.select_related("referral", "product"), portal.user, partner="partner_id"
    ).filter(partner_id=portal.partner.pk, is_sandbox=portal.sandbox)


def lead_events(portal: Portal) -> QuerySet[LeadEvent]:
    return visible_to(LeadEvent.objects.all(), portal.user, partner="partner_id").filter(
        partner_id=portal.partner.pk, lead__is_sandbox=portal.sandbox
    )


def returns(portal: Portal) -> QuerySet[LeadEvent]:
    return (
        lead_events(portal)
        .filter(type=EventType.RETURNED)
        .select_related("lead", "reversed_by")
        .order_by("-received_at", "-id")
    )


def return_reviews(portal: Portal) -> QuerySet[ReturnReview]:
    return visible_to(ReturnReview.objects.all(), portal.user, partner="partner_id").filter(
        partner_id=portal.partner.pk, lead__is_sandbox=portal.sandbox
    )


def delivery_attempts(portal: Portal) -> QuerySet[DeliveryAttempt]:
    return (
        visible_to(DeliveryAttempt.objects.all(), portal.user, partner="lead__partner_id")
        .filter(lead__partner_id=portal.partner.pk, lead__is_sandbox=portal.sandbox)
        .order_by("-started_at", "-id")
    )


def _live_only(queryset: QuerySet[M], portal: Portal) -> QuerySet[M]:
    # Billing is live only: sandbox traffic is never charged.
    return queryset.none() if portal.sandbox else queryset


def invoices(portal: Portal) -> QuerySet[Invoice]:
    """Issued invoices only: drafts are the operator's working copies."""
    queryset = visible_to(
        Invoice.objects.exclude(status=InvoiceStatus.DRAFT), portal.user, partner="partner_id"
    ).filter(partner_id=portal.partner.pk)
    return _live_only(queryset, portal).order_by("-issued_at", "-number")


def credit_notes(portal: Portal) -> QuerySet[CreditNote]:
    queryset = visible_to(
        CreditNote.objects.select_related("invoice"), portal.user, partner="partner_id"
    ).filter(partner_id=portal.partner.pk)
    return _live_only(queryset, portal).order_by("-issued_at", "-number")


def payments(portal: Portal) -> QuerySet[Payment]:
    queryset = visible_to(
        Payment.objects.prefetch_related("allocations__invoice"),
        portal.user,
        partner="partner_id",
    ).filter(partner_id=portal.partner.pk)
    return _live_only(queryset, portal).order_by("-received_at", "-id")


def api_keys(portal: Portal) -> QuerySet[ApiKey]:
    """The partner's keys of both modes (configuration), newest first."""
    return (
        visible_to(ApiKey.objects.all(), portal.user, partner="partner_id")
        .filter(partner_id=portal.partner.pk, kind=KeyKind.PARTNER)
        .order_by("-created_at", "-id")
    )


def webhook_endpoints(portal: Portal) -> QuerySet[WebhookEndpoint]:
    return (
        visible_to(WebhookEndpoint.objects.all(), portal.user, partner="partner_id")
        .filter(partner_id=portal.partner.pk)
        .order_by("-is_active", "-created_at", "-id")
    )


def webhook_messages(portal: Portal) -> QuerySet[WebhookMessage]:
    return (
        visible_to(
            WebhookMessage.objects.select_related("endpoint"), portal.user, partner="partner_id"
        )
        .filter(partner_id=portal.partner.pk, is_sandbox=portal.sandbox)
        .order_by("-created_at", "-id")
    )


def deletion_requests(portal: Portal) -> QuerySet[DeletionRequest]:
    return (
        visible_to(
            DeletionRequest.objects.select_related("withdrawal"), portal.user, partner="partner_id"
        )
        .filter(partner_id=portal.partner.pk, withdrawal__grant__is_sandbox=portal.sandbox)
        .order_by("acknowledged_at", "-requested_at", "-id")
    )
