"""The endpoints each simulated lender answers: ``ping`` (bid or reject), ``post`` (accept
or reject, the first decision replayed; accepted leads queue outcome postbacks) and
``webhooks`` (consent withdrawals acknowledged), each behind a Standard Webhooks signature
check, with latency and the injected faults (500, garbage, hang, reset) played here.
Mixed into :class:`demo.server.PartnerSimulator`, which owns the state they use.
"""

from __future__ import annotations

import copy
import json
import logging
import threading
import time
from decimal import Decimal, InvalidOperation
from typing import Any, Literal
from urllib.parse import urlsplit

from standardwebhooks.webhooks import WebhookVerificationError

from demo.journal import Journal
from demo.lender_state import _LenderState
from demo.lenders import OutcomeDraws, fault_for, find_pii, ping_answer, post_decision
from demo.postbacks import Job, Postbacks, ack_job, outcome_job
from demo.transport import DropConnection, Handler

logger = logging.getLogger(__name__)

Kind = Literal["post", "ping", "webhooks"]
KINDS: tuple[Kind, ...] = ("post", "ping", "webhooks")

_FAULT_COUNTERS = {
    "http500": "http500_injected",
    "garbage": "garbage_injected",
    "hang": "timeouts_injected",
    "reset": "resets_injected",
}

_GARBAGE_BODY = (
    b"<html><head><title>502 Bad Gateway</title></head>"
    b"<body><h1>Bad Gateway</h1><p>upstream connect error</p></body></html>"
)


class LenderEndpoints:
    """Request handling for :class:`demo.server.PartnerSimulator` (the HTTP layer calls
    :meth:`handle_post`); the attributes below are the simulator's."""

    _states: dict[str, _LenderState]
    _api_base_url: str | None
    _lock: threading.Lock
    _stop_event: threading.Event
    _journal: Journal
    _postbacks: Postbacks

    def _count(self, state: _LenderState, key: str, n: int = 1) -> None:
        with self._lock:
            state.counters[key] += n

    def _wait_or_drop(self, seconds: float) -> None:
        if seconds > 0 and self._stop_event.wait(seconds):
            raise DropConnection

    def handle_post(self, handler: Handler) -> None:
        body = handler.read_body()  # always, so a keep-alive connection stays in sync
        if body is None:
            return
        parts = urlsplit(handler.path).path.strip("/").split("/")
        state = self._states.get(parts[0]) if len(parts) == 2 else None
        if state is None or parts[1] not in KINDS:
            handler._send_json(404, {"error": "not_found"})
            return
        kind = parts[1]
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            self._count(state, "bad_requests")
            handler._send_json(400, {"error": "body_not_utf8"})
            return
        headers = {key.lower(): value for key, value in handler.headers.items()}
        try:
            state.webhook.verify(text, headers, json_parse=False)
        except (WebhookVerificationError, ValueError, TypeError, IndexError):
            self._count(state, "bad_signatures")
            handler._send_json(401, {"error": "invalid_signature"})
            return
        try:
            payload = json.loads(text)
        except ValueError:
            payload = None
        if not isinstance(payload, dict):
            self._count(state, "bad_requests")
            handler._send_json(400, {"error": "malformed_json"})
            return
        if kind == "ping":
            self._handle_ping(handler, state, payload)
        elif kind == "post":
            self._handle_lead_post(handler, state, payload)
        else:
            self._handle_webhook(handler, state, payload)

    def _pick_fault(self, state: _LenderState, u: float) -> str | None:
        """Apply latency, count and return the fault draw ``u`` picks (a hang is played here:
        the request is answered late, if the client still listens)."""
        lender = state.lender
        self._wait_or_drop(lender.latency_ms / 1000)
        fault = fault_for(lender, u)
        if fault is None:
            return None
        self._count(state, "errors_injected")
        self._count(state, _FAULT_COUNTERS[fault])
        if fault == "hang":
            self._wait_or_drop(lender.hang_seconds)
        return fault

    @staticmethod
    def _answer_fault(handler: Handler, fault: str) -> None:
        """Answer with ``fault`` instead of the lender's answer (a reset answers nothing)."""
        if fault == "http500":
            handler._send(500, b"Internal Server Error", "text/plain; charset=utf-8")
        elif fault == "garbage":
            handler._send(200, _GARBAGE_BODY, "text/html; charset=utf-8")
        elif fault == "reset":
            handler.reset_connection()

    def _handle_ping(self, handler: Handler, state: _LenderState, payload: dict[str, Any]) -> None:
        u_fault, u_reject, u_reason, u_bid = state.draw(4)
        pii = find_pii(payload)
        with self._lock:
            state.pings.append(copy.deepcopy(payload))
            state.counters["pings"] += 1
            if pii:
                state.counters["pii_in_ping"] += 1
                state.violations.append({"ping_id": payload.get("ping_id"), "keys": pii})
        if pii:
            logger.warning(
                "partner simulator: %s received personal data in a ping: %s",
                state.lender.slug,
                ", ".join(pii),
            )
        fault = self._pick_fault(state, u_fault)
        ping_id = payload.get("ping_id")
        if fault is not None and fault != "hang":
            self._journal.write("ping", slug=state.lender.slug, ping_id=ping_id, answer=fault)
            self._answer_fault(handler, fault)
            return
        if payload.get("type") != "lead.ping" or not ping_id:
            self._count(state, "bad_requests")
            handler._send_json(400, {"error": "bad_ping", "detail": "need type=lead.ping, ping_id"})
            return
        answer = ping_answer(
            state.lender, payload, u_reject=u_reject, u_reason=u_reason, u_bid=u_bid
        )
        self._count(state, "bids" if answer["decision"] == "bid" else "ping_rejected")
        self._journal.write(
            "ping", slug=state.lender.slug, ping_id=ping_id, answer=fault or answer["decision"]
        )
        handler._send_json(200, answer)

    def _handle_lead_post(
        self, handler: Handler, state: _LenderState, payload: dict[str, Any]
    ) -> None:
        received_at = time.time()
        u = state.draw(9)
        with self._lock:
            state.posts.append(copy.deepcopy(payload))
            state.counters["posts"] += 1
        lender = state.lender
        lead_id = payload.get("lead_id")
        fault = self._pick_fault(state, u[0])
        lost = fault is not None and fault != "hang"  # the answer the platform will not get
        if lost and not lender.faults_after_decision:
            self._log_post(state, lead_id, received_at, answer=fault, decision=None)
            self._answer_fault(handler, str(fault))
            return
        amount, currency = self._loan_of(state, payload)
        if (
            payload.get("type") != "lead.post"
            or not isinstance(lead_id, str)
            or not lead_id
            or amount is None
        ):
            self._count(state, "bad_requests")
            self._log_post(state, lead_id, received_at, answer="bad_request", decision=None)
            handler._send_json(
                400,
                {"error": "bad_post", "detail": "need type=lead.post, lead_id, loan.amount > 0"},
            )
            return
        job: Job | None = None
        with self._lock:
            response = state.decisions.get(lead_id)
            if response is not None:
                state.counters["duplicates"] += 1
            else:
                response = post_decision(lender, u_accept=u[1], u_reason=u[2], u_reference=u[3])
                if response["decision"] == "accept":
                    state.counters["accepted"] += 1
                    job = outcome_job(
                        api_base_url=self._api_base_url,
                        lender=lender,
                        lead_id=lead_id,
                        requested=amount,
                        currency=currency,
                        u=OutcomeDraws(
                            approve=u[4], fund=u[5], full=u[6], cut=u[7], apr=u[8], reason=u[2]
                        ),
                    )
                else:
                    state.counters["rejected"] += 1
                state.decisions[lead_id] = response
            if lost:
                state.counters["answers_lost"] += 1
        answer = fault if fault is not None else response["decision"]
        self._log_post(state, lead_id, received_at, answer=answer, decision=response["decision"])
        if job is not None:
            self._postbacks.reserve()  # before answering, so wait_idle() after it sees it
        try:
            if lost:
                self._answer_fault(handler, str(fault))
            else:
                handler._send_json(200, response)
        finally:
            if job is not None:
                self._postbacks.submit(job, delay=lender.outcome_delay_ms / 1000)

    @staticmethod
    def _loan_of(state: _LenderState, payload: dict[str, Any]) -> tuple[Decimal | None, str | None]:
        """The posted loan's amount (None unless a finite amount > 0) and the currency the
        lender reports in (its own, else the loan's)."""
        loan = payload.get("loan")
        if not isinstance(loan, dict):
            return None, state.lender.currency
        currency = state.lender.currency
        if currency is None and isinstance(loan.get("currency"), str):
            currency = loan["currency"]
        try:
            amount = Decimal(str(loan.get("amount")))
        except InvalidOperation:
            return None, currency
        if not amount.is_finite() or amount <= 0:
            return None, currency
        return amount, currency

    def _log_post(
        self,
        state: _LenderState,
        lead_id: object,
        received_at: float,
        *,
        answer: str | None,
        decision: str | None,
    ) -> None:
        self._journal.write(
            "post",
            slug=state.lender.slug,
            lead_id=lead_id if isinstance(lead_id, str) else None,
            received_at=received_at,
            answer=answer,
            decision=decision,
        )

    def _handle_webhook(
        self, handler: Handler, state: _LenderState, payload: dict[str, Any]
    ) -> None:
        event_type = payload.get("type")
        data = payload.get("data")
        with self._lock:
            state.webhooks.append(copy.deepcopy(payload))
            state.counters["webhooks"] += 1
        self._journal.write(
            "webhook",
            slug=state.lender.slug,
            webhook_id=handler.headers.get("webhook-id"),
            type=event_type if isinstance(event_type, str) else None,
        )
        if not isinstance(event_type, str) or not isinstance(data, dict):
            self._count(state, "bad_requests")
            handler._send_json(400, {"error": "bad_webhook", "detail": "need type and data"})
            return
        job: Job | None = None
        if event_type == "consent.withdrawn":
            lead_ids = data.get("lead_ids")
            withdrawal_id = data.get("withdrawal_id")
            if not isinstance(lead_ids, list) or not all(isinstance(x, str) for x in lead_ids):
                self._count(state, "bad_requests")
                handler._send_json(
                    400, {"error": "bad_webhook", "detail": "data.lead_ids must be a list"}
                )
                return
            with self._lock:
                state.counters["withdrawals"] += 1
                state.deletion_requested.update(lead_ids)
            job = ack_job(
                api_base_url=self._api_base_url,
                lender=state.lender,
                withdrawal_id=withdrawal_id,
                lead_ids=lead_ids,
            )
        self._wait_or_drop(state.lender.latency_ms / 1000)
        if job is not None:
            self._postbacks.reserve()
        try:
            handler._send(204)
        finally:
            if job is not None:
                self._postbacks.submit(job, delay=state.lender.outcome_delay_ms / 1000)
