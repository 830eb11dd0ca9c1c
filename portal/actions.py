"""What partner staff change in the portal: each one call to the domain function the API
or the admin already uses, in one transaction with its ``PortalAction`` row (who, what,
when). Objects are found through ``portal.selectors``: another partner's, or one of the
other mode, is ``DoesNotExist`` (a 404 to the views)."""

from __future__ import annotations

import uuid

from django.db import transaction
from django.utils import timezone

from billing.outcomes import report_outcome
from consent import deletion
from consent.models import DeletionRequest
from marketplace import resend
from marketplace.events import EventReport
from marketplace.models import EventType, LeadEvent
from partners import webhook_delivery
from partners.keys import IssuedKey, issue_api_key, revoke_api_key
from partners.models import KeyMode, WebhookEndpoint
from partners.urlsafety import check_partner_url
from partners.webhook_signing import create_endpoint
from portal import selectors
from portal.access import Portal
from portal.models import PortalAction, PortalActionKind

# The partner's event ids of returns requested here: "portal-" and the form's one-time id,
# so a form posted twice is the same event (a replay), never a second return.
RETURN_EVENT_PREFIX = "portal-"


class EndpointDisabled(ValueError):
    """A message of a disabled endpoint cannot be replayed (as in the API: 409)."""


def _log(portal: Portal, kind: str, target: object) -> None:
    PortalAction.objects.create(
        partner=portal.partner,
        user=portal.user,
        kind=kind,
        target=str(target)[:80],
        is_sandbox=portal.sandbox,
    )


def request_return(
    *, portal: Portal, lead_id: uuid.UUID, reason: str, form_id: uuid.UUID
) -> tuple[LeadEvent, bool]:
    """Return a delivered lead with a reason code: a ``returned`` event through
    ``billing.outcomes.report_outcome``, as the events API stores it (window, review over the
    return-rate cap, credit). (event, created); raises ``EventError`` or
    ``Lead.DoesNotExist``."""
    external_id = f"{RETURN_EVENT_PREFIX}{form_id}"
    # The same form posted again (a double click, a reload): the return it made. Checked
    # before reporting because the replay of an event must repeat its occurred_at.
    earlier = selectors.lead_events(portal).filter(lead_id=lead_id, external_id=external_id).first()
    if earlier is not None:
        return earlier, False
    report = EventReport(
        external_id=external_id,
        type=EventType.RETURNED,
        occurred_at=timezone.now(),
        reason=reason,
    )
    with transaction.atomic():
        event, created = report_outcome(
            lead_id=lead_id,
            partner_id=portal.partner.pk,
            report=report,
            leads=selectors.leads(portal),
        )
        if created:
            _log(portal, PortalActionKind.RETURN_REQUESTED, event.lead_id)
    return event, created


def create_key(*, portal: Portal, name: str, mode: str) -> IssuedKey:
    if mode not in KeyMode.values:
        raise ValueError(f"unknown key mode {mode!r}")
    with transaction.atomic():
        issued = issue_api_key(partner=portal.partner, mode=mode, name=name)
        _log(portal, PortalActionKind.KEY_CREATED, issued.api_key.prefix)
    return issued


def revoke_key(*, portal: Portal, key_id: int) -> None:
    with transaction.atomic():
        api_key = selectors.api_keys(portal).select_for_update().get(pk=key_id)
        if api_key.revoked_at is None:
            revoke_api_key(api_key=api_key)
            _log(portal, PortalActionKind.KEY_REVOKED, api_key.prefix)


def set_webhook_url(*, portal: Portal, url: str) -> str | None:
    """Point the partner's active endpoint at ``url`` (checked as the admin checks partner
    URLs); with no endpoint yet, create one and return its secret (shown once)."""
    check_partner_url(url)
    with transaction.atomic():
        endpoint = selectors.webhook_endpoints(portal).select_for_update().first()
        secret = None
        if endpoint is None:
            endpoint, secret = create_endpoint(partner=portal.partner, url=url)
        else:
            WebhookEndpoint.objects.filter(pk=endpoint.pk).update(url=url)
        _log(portal, PortalActionKind.WEBHOOK_URL_SET, endpoint.pk)
    return secret


def rotate_webhook_secret(*, portal: Portal, endpoint_id: int) -> str:
    """A new signing secret (shown once); the old one keeps signing for a day."""
    with transaction.atomic():
        endpoint = selectors.webhook_endpoints(portal).get(pk=endpoint_id)
        secret = webhook_delivery.rotate_secret(endpoint_id=endpoint.pk)
        _log(portal, PortalActionKind.SECRET_ROTATED, endpoint.pk)
    return secret


def replay_message(*, portal: Portal, message_id: str) -> None:
    with transaction.atomic():
        message = selectors.webhook_messages(portal).get(pk=message_id)
        if not message.endpoint.is_active:
            raise EndpointDisabled("The webhook endpoint is disabled; ask us to re-enable it.")
        webhook_delivery.replay(message_id=message.pk)
        _log(portal, PortalActionKind.WEBHOOK_REPLAYED, message.pk)


def resend_lead(*, portal: Portal, lead_id: uuid.UUID) -> None:
    """Queue a failed lead post again through the outbox (``marketplace.resend``: refused
    when the partner may hold the lead or another partner took its place; the consent gate
    decides when it is posted). Raises ``Lead.DoesNotExist`` for a lead not the portal's,
    ``ResendRefused`` for one that may not be sent again."""
    with transaction.atomic():
        lead = selectors.leads(portal).get(pk=lead_id)
        resend.resend(lead_id=lead.pk)
        _log(portal, PortalActionKind.LEAD_RESENT, lead.pk)


def acknowledge_deletion(*, portal: Portal, withdrawal_id: int) -> deletion.Acknowledgement:
    """The partner confirms it deleted a withdrawn applicant's data: the API's domain
    function, with the staff user recorded in the ledger entry."""
    with transaction.atomic():
        if not selectors.deletion_requests(portal).filter(withdrawal_id=withdrawal_id).exists():
            raise DeletionRequest.DoesNotExist
        ack = deletion.acknowledge(
            withdrawal_id=withdrawal_id,
            partner_id=portal.partner.pk,
            is_sandbox=portal.sandbox,
            acting_user={"id": str(portal.user.pk), "username": portal.user.get_username()},
        )
        if ack.created:
            _log(portal, PortalActionKind.DELETION_ACKNOWLEDGED, withdrawal_id)
    return ack
