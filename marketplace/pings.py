"""Anonymised pings: build them, send them in parallel, parse the answers.

No database here. The auction (``marketplace.auctions``) loads everything it needs first,
calls :func:`fan_out`, and writes the results in one batch, so nothing but the partners
themselves stands between the first ping and the last answer.

Currency (the protocol partners implement): a ping names ``currency``, the currency of the
loan asked for (the referral's). A bid is a price in that currency: the answer may say so
(``"currency": "CNY"``) or leave it out (then it is the ping's). A bid in any other
currency is an *error* with a reason saying so; it is never relabelled as the ping's
currency (an amount in USD is not the same number of yuan).

A ping carries no personal data, only the bands a partner prices on (``PING_FIELDS``):
that is what lets us ask every candidate, and disclose the applicant to the winners only
(FTC v. ITMedia: a lead seller was fined for showing buyers unmasked applications).

Each ping is bounded by its product's ``ping_timeout_ms`` *and* by what is left of the
auction's budget (counted from when the worker took the auction, so our own preparation
is inside it), as a total (connect, send, wait, read), not per socket operation. The
event loop and the HTTP client (with its keep-alive connections to partners) live as long
as the worker thread, so an auction pays for neither a new loop nor new TCP handshakes.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

import httpx

from marketplace.answers import read_answer, rejection
from marketplace.bands import age_band_label, income_band_label
from marketplace.models import AttemptOutcome, Referral
from partners import http
from partners.webhook_signing import signed_headers

# Everything a ping may say about an applicant. Tests assert the payload is exactly this.
PING_FIELDS = (
    "risk_tier",
    "amount",
    "currency",
    "term_months",
    "region",
    "age_band",
    "income_band",
    "purpose",
)
# A bid above this is a typo or an attack, not a price for one lead (in any of our
# currencies).
MAX_BID = Decimal("100000")
ACCEPTED = "accept"  # decision of a partner that takes the lead at its fee schedule's price


@dataclass(frozen=True, slots=True)
class PingTarget:
    ping_id: str  # also the Standard Webhooks ``webhook-id``
    url: str
    secret: str  # the partner's whsec_ signing secret
    timeout_ms: int


@dataclass(frozen=True, slots=True)
class PingResult:
    ping_id: str
    started_at: datetime
    latency_ms: int
    http_status: int | None
    outcome: str  # AttemptOutcome
    reason: str = ""
    bid: Decimal | None = None  # None with outcome success: an accept at the fee schedule
    bid_currency: str = ""  # the ping's currency when there is a bid, else empty


def ping_payload(referral: Referral, ping_id: str) -> dict[str, Any]:
    """The ping for one partner: bands from marketplace.bands, never exact values."""
    return {
        "type": "lead.ping",
        "ping_id": ping_id,
        "risk_tier": referral.risk_tier,
        "amount": str(referral.amount),
        "currency": referral.currency,
        "term_months": referral.term_months,
        "region": referral.region,
        "age_band": age_band_label(referral.age),
        "income_band": income_band_label(referral.income_band_floor),
        "purpose": referral.purpose,
    }


def parse_bid(raw: object) -> Decimal | None:
    """A bid as money (two places), or None when it is not a sane positive amount."""
    if isinstance(raw, bool) or not isinstance(raw, str | int | float):
        return None
    try:
        bid = Decimal(str(raw))
    except InvalidOperation:
        return None
    if not bid.is_finite() or bid <= 0 or bid > MAX_BID or bid != bid.quantize(Decimal("0.01")):
        return None
    return bid.quantize(Decimal("0.01"))


def parse_ping_response(
    response: httpx.Response, *, currency: str
) -> tuple[str, str, Decimal | None]:
    """(outcome, reason, bid) from a partner's answer to a ping in ``currency``; a bid is
    in that currency. Anything but a well-formed bid (in the ping's currency), accept or
    reject is an *error* with a reason a human can act on."""
    answer = read_answer(response)
    if answer.error:
        return AttemptOutcome.ERROR, answer.error, None
    body, decision = answer.body, answer.decision
    if decision == "bid":
        bid = parse_bid(body.get("bid"))
        if bid is None:
            return AttemptOutcome.ERROR, f"bid is not an amount between 0 and {MAX_BID}", None
        said = body.get("currency")
        if said is not None and said != currency:
            shown = said[:8] if isinstance(said, str) else type(said).__name__
            return (
                AttemptOutcome.ERROR,
                f"bid currency {shown!r} is not the ping's currency {currency}: "
                f"bids are in the ping's currency",
                None,
            )
        return AttemptOutcome.SUCCESS, "", bid
    if decision == ACCEPTED:
        return AttemptOutcome.SUCCESS, "accepted at the fee schedule", None
    if decision == "reject":
        return (*rejection(answer), None)
    return AttemptOutcome.ERROR, "response has no decision bid/accept/reject", None


def error_result(ping_id: str, reason: str) -> PingResult:
    """A ping we did not send (e.g. an unsafe URL): recorded like any other error."""
    return PingResult(ping_id, datetime.now(tz=UTC), 0, None, AttemptOutcome.ERROR, reason[:200])


async def _ping(target: PingTarget, body: bytes, deadline: float, currency: str) -> PingResult:
    started_at = datetime.now(tz=UTC)
    started = time.monotonic()
    own = target.timeout_ms / 1000
    left = deadline - started
    limit = min(own, left)

    def result(
        status: int | None, outcome: str, reason: str, bid: Decimal | None = None
    ) -> PingResult:
        latency = int((time.monotonic() - started) * 1000)
        return PingResult(
            target.ping_id,
            started_at,
            latency,
            status,
            outcome,
            reason[:200],
            bid,
            currency if bid is not None else "",
        )

    if limit <= 0:
        return result(None, AttemptOutcome.ERROR, "auction budget spent before the ping")
    try:
        headers = signed_headers(target.secret, body, msg_id=target.ping_id)
    except Exception as exc:
        # One partner's bad secret must not sink the auction for the others.
        return result(None, AttemptOutcome.ERROR, f"unexpected {type(exc).__name__}")
    sent = await http.apost(target.url, body=body, headers=headers, timeout=limit)
    if sent.response is None:
        reason = sent.reason
        if sent.kind == http.Kind.TIMEOUT:
            which = f"ping timeout {target.timeout_ms} ms" if own <= left else "auction budget"
            reason = f"timed out ({which})"
        return result(None, AttemptOutcome.ERROR, reason)
    outcome, reason, bid = parse_ping_response(sent.response, currency=currency)
    return result(sent.status, outcome, reason, bid)


async def _fan_out(
    targets: Sequence[tuple[PingTarget, bytes]], deadline: float, currency: str
) -> list[PingResult]:
    return list(
        await asyncio.gather(*(_ping(target, body, deadline, currency) for target, body in targets))
    )


def fan_out(
    targets: Sequence[tuple[PingTarget, bytes]], *, deadline: float, currency: str
) -> list[PingResult]:
    """Send every (target, body) at once (pings in ``currency``); results in the same
    order. Returns by the deadline (``time.monotonic()``; plus the time to cancel
    stragglers), whatever the partners do."""
    if not targets:
        return []
    loop = http.event_loop()
    return loop.run_until_complete(_fan_out(targets, deadline, currency))


def encode(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, separators=(",", ":")).encode()
