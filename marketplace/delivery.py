"""Direct post of a lead to its partner: the moment personal data leaves the vault.

The post goes through the consent gate (which logs the disclosure), is signed per Standard
Webhooks with a ``webhook-id`` that is stable per lead so a partner can drop a retried
duplicate, and every attempt is recorded with its outcome, reason and latency. A partner
that answers garbage, an error, a redirect or nothing is an *error* with a reason, never a
crash and never a lost lead: the task retries with backoff and gives up as delivery_failed.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx
from django.db import transaction
from django.utils import timezone

from consent.gate import DisclosureRefused, disclose
from marketplace import auctions
from marketplace.answers import read_answer, rejection
from marketplace.models import AttemptOutcome, DeliveryAttempt, Lead, LeadStatus
from partners import http, webhook_delivery, webhook_signing
from partners.urlsafety import UnsafeUrlError, check_partner_url

# The purpose every referral consent must cover for a lead to be disclosed.
REFERRAL_PURPOSE = "loan_referral"
# Time a claim outlives the post's own timeout (signing, disclosure, recording).
CLAIM_MARGIN_MS = 30_000
DELIVERABLE = {LeadStatus.MATCHED, LeadStatus.DELIVERY_FAILED}


@dataclass(frozen=True)
class DeliveryResult:
    outcome: str  # AttemptOutcome, or "skipped" when there was nothing to do
    reason: str = ""
    retryable: bool = False


@dataclass(frozen=True)
class Posted:
    result: DeliveryResult
    fallback: list[Lead]  # the auction's next bidders' new leads, to post after commit


def post_lead(*, lead_id: uuid.UUID, final_attempt: bool) -> Posted:
    """One delivery attempt (:func:`deliver`) and what must follow it: a lead won at an
    auction whose post was rejected, or failed for good, goes to the next bidders
    (``auctions.fall_back``: a no-op for leads not won at an auction, or refused by
    consent). A retryable failure falls back only once its retries are spent."""
    result = deliver(lead_id=lead_id, final_attempt=final_attempt)
    fallback: list[Lead] = []
    if not result.retryable and result.outcome in {AttemptOutcome.FAILURE, AttemptOutcome.ERROR}:
        fallback = auctions.fall_back(lead_id=lead_id)
    return Posted(result, fallback)


def post_payload(lead: Lead, applicant: dict[str, str]) -> dict[str, Any]:
    referral = lead.referral
    grant = referral.grant
    assert grant is not None
    return {
        "type": "lead.post",
        "lead_id": str(lead.id),
        "mode": "sandbox" if lead.is_sandbox else "live",
        "loan": {
            "amount": str(referral.amount),
            "currency": referral.currency,
            "term_months": referral.term_months,
            "purpose": referral.purpose,
        },
        "risk_tier": referral.risk_tier,
        "region": referral.region,
        "applicant": applicant,
        "consent": {
            "receipt_id": str(grant.id),
            "text_version": grant.text.version,
            "text_sha256": grant.text_sha256,
        },
    }


def parse_post_response(response: httpx.Response) -> tuple[str, str, str]:
    """(outcome, reason, partner reference) from a partner's answer to a post."""
    answer = read_answer(response)
    if answer.error:
        return AttemptOutcome.ERROR, answer.error, ""
    if answer.decision == "accept":
        return AttemptOutcome.SUCCESS, "", str(answer.body.get("reference", ""))[:120]
    if answer.decision == "reject":
        return (*rejection(answer), "")
    return AttemptOutcome.ERROR, "response has no decision accept/reject", ""


def _record(
    lead: Lead, url: str, started: float, status: int | None, outcome: str, reason: str
) -> None:
    DeliveryAttempt.objects.create(
        lead=lead,
        url=url,
        started_at=timezone.now(),
        latency_ms=int((time.monotonic() - started) * 1000),
        http_status=status,
        outcome=outcome,
        reason=reason[:200],
    )


def deliver(*, lead_id: uuid.UUID, final_attempt: bool = False) -> DeliveryResult:
    lead = _claim(lead_id)
    if lead is None:
        return DeliveryResult("skipped", "lead is delivered, in flight elsewhere or not ours")
    url = lead.product.post_url
    started = time.monotonic()
    try:
        # Before any personal data is prepared; the client checks again when it connects,
        # on the address it actually connects to.
        check_partner_url(url)
    except UnsafeUrlError as exc:
        _record(lead, url, started, None, AttemptOutcome.ERROR, str(exc))
        _set_status(lead, LeadStatus.DELIVERY_FAILED)
        return DeliveryResult(AttemptOutcome.ERROR, str(exc))
    secret = webhook_signing.signing_secret(lead.partner)
    if secret is None:
        reason = "partner has no active signing secret"
        _record(lead, url, started, None, AttemptOutcome.ERROR, reason)
        _set_status(lead, LeadStatus.DELIVERY_FAILED)
        return DeliveryResult(AttemptOutcome.ERROR, reason)
    assert lead.referral.grant_id is not None
    try:
        disclosed = disclose(
            grant_id=lead.referral.grant_id,
            partner_id=lead.partner_id,
            purpose=REFERRAL_PURPOSE,
            reference=f"lead:{lead.id}",
        )
    except DisclosureRefused as exc:
        _record(lead, url, started, None, AttemptOutcome.FAILURE, f"consent: {exc.code}")
        _set_status(lead, LeadStatus.BLOCKED)
        return DeliveryResult(AttemptOutcome.FAILURE, exc.code)
    body = json.dumps(post_payload(lead, disclosed.data), separators=(",", ":")).encode()
    headers = webhook_signing.signed_headers(secret, body, msg_id=f"lead_{lead.id}")
    sent = http.post(url, body=body, headers=headers, timeout=lead.product.post_timeout_ms / 1000)
    if sent.response is not None:
        outcome, reason, reference = parse_post_response(sent.response)
    else:
        outcome, reason, reference = AttemptOutcome.ERROR, sent.reason, ""
    status = sent.status
    _record(lead, url, started, status, outcome, reason)
    if outcome == AttemptOutcome.SUCCESS:
        _set_status(lead, LeadStatus.DELIVERED, reference=reference)
        return DeliveryResult(outcome)
    if outcome == AttemptOutcome.FAILURE:
        _set_status(lead, LeadStatus.POST_REJECTED)
        return DeliveryResult(outcome, reason)
    _set_status(lead, LeadStatus.DELIVERY_FAILED)
    retryable = not final_attempt and http.POST_RETRIES.retryable(sent)
    return DeliveryResult(outcome, reason, retryable=retryable)


def _claim(lead_id: uuid.UUID) -> Lead | None:
    """Move the lead to ``delivering`` under a lease, or None if another worker holds it
    (or it needs no delivery). The lease outlives the post's timeout, so a worker that
    died mid-post is taken over once it expires, and never while it may still be posting."""
    with transaction.atomic():
        lead = (
            Lead.objects.select_for_update(of=("self",))
            .select_related("referral__grant__text", "product", "partner")
            .get(pk=lead_id)
        )
        now = timezone.now()
        lease_expired = lead.status == LeadStatus.DELIVERING and (
            lead.claim_expires_at is None or lead.claim_expires_at <= now
        )
        if lead.status not in DELIVERABLE and not lease_expired:
            return None
        lead.status = LeadStatus.DELIVERING
        lead.claim_expires_at = now + timedelta(
            milliseconds=lead.product.post_timeout_ms + CLAIM_MARGIN_MS
        )
        lead.delivery_attempts += 1
        lead.save(update_fields=["status", "claim_expires_at", "delivery_attempts", "updated_at"])
        return lead


def _set_status(lead: Lead, status: str, *, reference: str = "") -> None:
    now = timezone.now()
    fields: dict[str, Any] = {"status": status, "updated_at": now, "claim_expires_at": None}
    if status == LeadStatus.DELIVERED:
        fields["delivered_at"] = now
        fields["partner_reference"] = reference
    with transaction.atomic():
        # Compare-and-set: only the claim we hold moves the lead on.
        moved = Lead.objects.filter(pk=lead.pk, status=LeadStatus.DELIVERING).update(**fields)
        if moved and status == LeadStatus.DELIVERED:
            notify_delivered(lead=lead, delivered_at=now)


def notify_delivered(*, lead: Lead, delivered_at: datetime) -> None:
    """Queue the signed ``lead.delivered`` webhook, in the caller's transaction (so it is
    sent if and only if the lead is delivered). Ids and times only: no personal data.
    Once per lead: the dedupe key makes a second call a no-op."""
    webhook_delivery.enqueue(
        partner_id=lead.partner_id,
        event_type="lead.delivered",
        data={
            "lead_id": str(lead.id),
            "product_id": str(lead.product_id),
            "delivered_at": delivered_at.isoformat(),
            "mode": "sandbox" if lead.is_sandbox else "live",
            "delivery_mode": lead.delivery_mode,
        },
        dedupe_key=f"lead.delivered:{lead.id}",
        is_sandbox=lead.is_sandbox,
    )
