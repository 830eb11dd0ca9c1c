"""Direct post of a lead to its partner: the moment personal data leaves the vault.

The post goes through the consent gate (which logs the disclosure), is signed per Standard
Webhooks with a ``webhook-id`` that is stable per lead so a partner can drop a retried
duplicate, and every attempt is recorded with its outcome, reason and latency. A partner
that answers garbage, an error, a redirect or nothing is an *error* with a reason, never a
crash and never a lost lead: the task retries with backoff and gives up as delivery_failed.

Claims. A worker posts a lead only under a claim: the lead is ``delivering`` with a lease
(``claim_expires_at``) that outlives the post's timeout. A worker that finds another's live
claim does not drop its message: it is told to come back when the lease ends
(``DeliveryResult.retry_at``), and then either finds the lead settled or takes the claim
over (its holder died mid-post). :func:`stale_claims` finds what no message is waiting on
any more (a claim past its lease, a matched lead never claimed) for the sweeper to queue.
Only the claim's holder records a failure; a partner's acceptance is recorded whoever
holds the claim (the partner holds the lead, whatever happened to our workers).
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx
from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from consent.gate import DisclosureRefused, disclose
from marketplace import auctions, caps, waterfall
from marketplace.answers import read_answer, rejection
from marketplace.models import AttemptOutcome, DeliveryAttempt, Lead, LeadStatus
from partners import http, webhook_delivery, webhook_signing
from partners.models import DeliveryMode
from partners.urlsafety import UnsafeUrlError, check_partner_url

# The purpose every referral consent must cover for a lead to be disclosed.
REFERRAL_PURPOSE = "loan_referral"
# Time a claim outlives the post's own timeout (signing, disclosure, recording).
CLAIM_MARGIN_MS = 30_000
DELIVERABLE = {LeadStatus.MATCHED, LeadStatus.DELIVERY_FAILED}
POSTED_MODES = (DeliveryMode.DIRECT_POST, DeliveryMode.PING_POST)
# A matched lead not claimed this long after it was made lost its message (a broker
# outage, a worker killed before it started): the sweeper queues it again.
UNCLAIMED_AFTER = timedelta(minutes=2)
SKIPPED = "skipped"  # nothing to do: delivered, settled, or not a posted lead
IN_FLIGHT = "in_flight"  # another worker's claim is live: come back at ``retry_at``
_STATUS_AFTER: dict[str, str] = {
    AttemptOutcome.SUCCESS: LeadStatus.DELIVERED,
    AttemptOutcome.FAILURE: LeadStatus.POST_REJECTED,
}


@dataclass(frozen=True)
class DeliveryResult:
    outcome: str  # AttemptOutcome, SKIPPED or IN_FLIGHT
    reason: str = ""
    retryable: bool = False
    # With ``retryable``: not before this moment (the end of another worker's claim). The
    # task waits at least until then, whatever its own backoff says.
    retry_at: datetime | None = None

    def retry_in(self, *, at_least: timedelta) -> timedelta:
        """How long the task waits before running again: its backoff, or longer if a
        claim it must not contest runs longer."""
        if self.retry_at is None:
            return at_least
        return max(at_least, self.retry_at - timezone.now())


@dataclass(frozen=True)
class Posted:
    result: DeliveryResult
    fallback: list[Lead]  # the next bidders' (or waterfall candidate's) new leads, to post


def post_lead(*, lead_id: uuid.UUID, final_attempt: bool) -> Posted:
    """One delivery attempt (:func:`deliver`) and what must follow it: a lead won at an
    auction whose post was rejected, or failed for good, goes to the next bidders
    (``auctions.fall_back``: a no-op for leads not won at an auction, or refused by
    consent). A retryable failure falls back only once its retries are spent."""
    result = deliver(lead_id=lead_id, final_attempt=final_attempt)
    fallback: list[Lead] = []
    if not result.retryable and result.outcome in {AttemptOutcome.FAILURE, AttemptOutcome.ERROR}:
        # The partner never took the lead: its award gives back its caps and budget
        # (a no-op unless the lead is rejected, failed or blocked, and after the first).
        caps.release(lead_id=lead_id)
        # A lead won at an auction goes to the next bidders, one of a waterfall to the
        # next in its line (each a no-op for the other's leads).
        fallback = auctions.fall_back(lead_id=lead_id) or waterfall.fall_back(lead_id=lead_id)
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
    """One post of the lead under a claim. ``final_attempt`` (or the lead's own count of
    attempts past DELIVERY_MAX_RETRIES) makes a failure final, not retryable."""
    claim = _claim(lead_id)
    if isinstance(claim, datetime):
        # Come back when the lease ends (then the post is settled or the claim is taken
        # over). The task's last run leaves it to the sweeper (stale_claims) rather than
        # waiting for ever: a run that cannot wait (eager mode) stops after its retries.
        return DeliveryResult(
            IN_FLIGHT,
            "another worker's claim on this post is live",
            retryable=not final_attempt,
            retry_at=claim,
        )
    if claim is None:
        return DeliveryResult(SKIPPED, "lead is delivered, settled or not posted")
    lead = claim
    final_attempt = final_attempt or lead.delivery_attempts > settings.DELIVERY_MAX_RETRIES
    url = lead.product.post_url
    started = time.monotonic()
    secret, refused = _signing_secret(lead, url)
    if secret is None:
        _finish(lead, url, started, None, AttemptOutcome.ERROR, refused, LeadStatus.DELIVERY_FAILED)
        return DeliveryResult(AttemptOutcome.ERROR, refused)
    assert lead.referral.grant_id is not None
    try:
        disclosed = disclose(
            grant_id=lead.referral.grant_id,
            partner_id=lead.partner_id,
            purpose=REFERRAL_PURPOSE,
            reference=disclosure_reference(lead.id),
        )
    except DisclosureRefused as exc:
        reason = f"consent: {exc.code}"
        _finish(lead, url, started, None, AttemptOutcome.FAILURE, reason, LeadStatus.BLOCKED)
        return DeliveryResult(AttemptOutcome.FAILURE, exc.code)
    body = json.dumps(post_payload(lead, disclosed.data), separators=(",", ":")).encode()
    headers = webhook_signing.signed_headers(secret, body, msg_id=f"lead_{lead.id}")
    sent = http.post(url, body=body, headers=headers, timeout=lead.product.post_timeout_ms / 1000)
    if sent.response is not None:
        outcome, reason, reference = parse_post_response(sent.response)
    else:
        outcome, reason, reference = AttemptOutcome.ERROR, sent.reason, ""
    status = _STATUS_AFTER.get(outcome, LeadStatus.DELIVERY_FAILED)
    _finish(lead, url, started, sent.status, outcome, reason, status, reference=reference)
    retryable = (
        outcome == AttemptOutcome.ERROR and not final_attempt and http.POST_RETRIES.retryable(sent)
    )
    return DeliveryResult(outcome, reason if outcome != AttemptOutcome.SUCCESS else "", retryable)


def disclosure_reference(lead_id: uuid.UUID) -> str:
    """The disclosure log's reference for this lead's post (and a pull lead's reads)."""
    return f"lead:{lead_id}"


def _signing_secret(lead: Lead, url: str) -> tuple[str | None, str]:
    """The partner's signing secret, or None and why the lead cannot be posted, decided
    before any personal data is prepared. (The client checks the address again when it
    connects, on the address it actually connects to.)"""
    try:
        check_partner_url(url)
    except UnsafeUrlError as exc:
        return None, str(exc)
    secret = webhook_signing.signing_secret(lead.partner)
    if secret is None:
        return None, "partner has no active signing secret"
    return secret, ""


def _claim(lead_id: uuid.UUID) -> Lead | datetime | None:
    """Move the lead to ``delivering`` under a lease and return it; or the end of another
    worker's live lease (come back then); or None when it needs no post. The lease
    outlives the post's timeout, so a worker that died mid-post is taken over once it
    ends, and never while it may still be posting."""
    with transaction.atomic():
        # The lead's row alone (of=self, no key): nothing else is locked by the join.
        lead = (
            Lead.objects.select_for_update(no_key=True, of=("self",))
            .select_related("referral__grant__text", "product", "partner")
            .get(pk=lead_id)
        )
        now = timezone.now()
        if lead.status == LeadStatus.DELIVERING:
            if lead.claim_expires_at is not None and lead.claim_expires_at > now:
                return lead.claim_expires_at
        elif lead.status not in DELIVERABLE:
            return None
        lead.status = LeadStatus.DELIVERING
        lead.claim_expires_at = now + timedelta(
            milliseconds=lead.product.post_timeout_ms + CLAIM_MARGIN_MS
        )
        lead.delivery_attempts += 1
        lead.save(update_fields=["status", "claim_expires_at", "delivery_attempts", "updated_at"])
        return lead


def _finish(
    lead: Lead,
    url: str,
    started: float,
    http_status: int | None,
    outcome: str,
    reason: str,
    status: str,
    *,
    reference: str = "",
) -> None:
    """Record the attempt and move the lead on, together or not at all (a database error
    in between would leave an attempt without its outcome, or the reverse). The partner's
    acceptance moves a lead from ``delivering`` whoever holds the claim now (the partner
    has it); anything else only under our own claim (a worker that outlived its lease must
    not overwrite the outcome of the worker that took over)."""
    now = timezone.now()
    fields: dict[str, Any] = {"status": status, "updated_at": now, "claim_expires_at": None}
    claim = Q(pk=lead.pk, status=LeadStatus.DELIVERING)
    if status == LeadStatus.DELIVERED:
        fields["delivered_at"] = now
        fields["partner_reference"] = reference
    else:
        claim &= Q(delivery_attempts=lead.delivery_attempts)
    with transaction.atomic():
        _record(lead, url, started, http_status, outcome, reason)
        moved = Lead.objects.filter(claim).update(**fields)
        if moved and status == LeadStatus.DELIVERED:
            notify_delivered(lead=lead, delivered_at=now)


def stale_claims(*, now: datetime | None = None, limit: int = 500) -> list[uuid.UUID]:
    """Posted leads no message waits on any more, oldest first, for the sweeper to queue
    (``marketplace.sweeps``): a claim past its lease (its worker died mid-post; the next
    run takes it over) and a matched lead never claimed within UNCLAIMED_AFTER (its
    message was lost). Queuing one that is in fact still queued is harmless: a post
    runs only under a claim."""
    now = now or timezone.now()
    stuck = Lead.objects.filter(delivery_mode__in=POSTED_MODES).filter(
        Q(status=LeadStatus.DELIVERING, claim_expires_at__lte=now)
        | Q(status=LeadStatus.DELIVERING, claim_expires_at__isnull=True)
        | Q(status=LeadStatus.MATCHED, created_at__lte=now - UNCLAIMED_AFTER)
    )
    return list(stuck.order_by("updated_at").values_list("id", flat=True)[:limit])


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
