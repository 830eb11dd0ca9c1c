"""Partner lender simulator: a real HTTP server on loopback that plays N partner lenders.

Used by the demo, by end-to-end tests and by benchmarks. Standalone on purpose: the
simulator (this module; lender behaviour in :mod:`demo.lenders`, the HTTP layer in
:mod:`demo.transport`, reports back to the platform in :mod:`demo.postbacks`, the config
file in :mod:`demo.config`) imports only the standard library, ``httpx`` and
``standardwebhooks`` (never Django or a project app), so it can be run with
``python -m demo.cli --config lenders.json``.

Each simulated lender answers, under ``{base_url}/{slug}/``:

* ``POST ping``     -- ``lead.ping`` (anonymised attributes) -> ``bid`` / ``reject``;
  any personal-data key in a ping is recorded as a violation (``pii_in_ping``). A bid
  states its ``currency``: the ping's, unless the lender is configured with its own.
* ``POST post``     -- ``lead.post`` (full application) -> ``accept`` (with the lender's own
  ``reference``) / ``reject``. Accepted leads are later reported to the platform API
  (``accepted`` -> ``approved`` | ``rejected`` -> ``funded``) by background workers;
  approved amounts and principals state their ``currency`` (the loan's, unless the lender
  is configured with its own).
  Posting the same ``lead_id`` again replays the first decision (no new events).
* ``POST webhooks`` -- platform notifications -> 204. ``consent.withdrawn`` marks
  ``data.lead_ids`` as "deletion requested" and is acknowledged to the platform API.

Every inbound request must carry a valid Standard Webhooks signature made with that
lender's secret (401 otherwise). Unknown slug -> 404, malformed JSON -> 400.
``GET /_health`` and ``GET /_stats`` exist for humans and scripts.

Fault injection (``error_rate``, ``garbage_rate``, ``timeout_rate``, ``reset_rate``; see
:func:`demo.lenders.fault_for`) applies to pings and posts only, so a flaky lender still
receives consent withdrawals. With ``log_path`` every post, ping, webhook and postback is
also written to the lenders' own log (:mod:`demo.journal`). All random choices come
from one ``random.Random`` per lender seeded from the simulator seed and the slug, and a
fixed number of draws is taken per request, so a given sequence of requests always gets the
same answers (the decisions themselves are :mod:`demo.lenders`' pure functions).
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import random
import socket
import threading
import time
from collections.abc import Sequence
from decimal import Decimal, InvalidOperation
from types import TracebackType
from typing import Any, Literal, Self
from urllib.parse import urlsplit

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from demo.config import SimulatorConfigError, check_unique_slugs
from demo.journal import Journal
from demo.lenders import (
    OutcomeDraws,
    SimulatedLender,
    fault_for,
    find_pii,
    ping_answer,
    post_decision,
)
from demo.postbacks import Job, Postbacks, ack_job, outcome_job
from demo.transport import DropConnection, Handler, Server

__all__ = ["KINDS", "STAT_KEYS", "PartnerSimulator"]

logger = logging.getLogger(__name__)

Kind = Literal["post", "ping", "webhooks"]
KINDS: tuple[Kind, ...] = ("post", "ping", "webhooks")

#: Counters reported by :meth:`PartnerSimulator.stats`, per lender.
STAT_KEYS: tuple[str, ...] = (
    "pings",  # signed, well-formed JSON pings received (including faulted ones)
    "bids",
    "ping_rejected",
    "posts",  # signed, well-formed JSON posts received (including faulted ones)
    "accepted",
    "rejected",
    "duplicates",  # posts for a lead_id already decided: first decision replayed
    "errors_injected",  # all injected faults: 500 + garbage + hang + reset
    "http500_injected",
    "garbage_injected",
    "timeouts_injected",
    "resets_injected",
    "answers_lost",  # posts decided (accepted or rejected) but answered with a fault
    "bad_signatures",
    "bad_requests",  # 400: malformed JSON or a body that breaks the contract
    "pii_in_ping",
    "webhooks",
    "withdrawals",
    "events_sent",
    "events_failed",
    "duplicates_sent",  # outcome events re-sent on purpose (duplicate_postbacks)
    "duplicates_failed",
    "acks_sent",
    "acks_failed",
)

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


# --------------------------------------------------------------------------- state


class _LenderState:
    def __init__(self, lender: SimulatedLender, seed: int) -> None:
        self.lender = lender
        self.webhook = Webhook(lender.secret)
        # String seeds are hashed with SHA-512: stable across processes and PYTHONHASHSEED.
        self.rng = random.Random(f"{seed}:{lender.slug}")  # noqa: S311 - simulation only
        self.rng_lock = threading.Lock()
        self.counters: dict[str, int] = dict.fromkeys(STAT_KEYS, 0)
        self.posts: list[dict[str, Any]] = []
        self.pings: list[dict[str, Any]] = []
        self.webhooks: list[dict[str, Any]] = []
        self.violations: list[dict[str, Any]] = []
        self.decisions: dict[str, dict[str, Any]] = {}
        self.deletion_requested: set[str] = set()

    def draw(self, n: int) -> list[float]:
        with self.rng_lock:
            return [self.rng.random() for _ in range(n)]


# --------------------------------------------------------------------------- simulator


class PartnerSimulator:
    """Serve ``lenders`` on ``http://{host}:{port}`` (port 0: any free port).

    ``api_base_url`` is the platform's base URL (``http://host:port``, no ``/api/v1``) used
    for outcome postbacks and withdrawal acks; None disables both.
    """

    def __init__(
        self,
        lenders: Sequence[SimulatedLender],
        *,
        api_base_url: str | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        seed: int = 0,
        postback_workers: int = 4,
        postback_retries: int = 5,
        postback_backoff: float = 0.05,
        postback_timeout: float = 5.0,
        postback_max_backoff: float = 5.0,
        log_path: str | None = None,
    ) -> None:
        if not lenders:
            raise SimulatorConfigError("at least one lender is required")
        check_unique_slugs(lenders)
        self._states: dict[str, _LenderState] = {
            lender.slug: _LenderState(lender, seed) for lender in lenders
        }
        self._api_base_url = api_base_url.rstrip("/") if api_base_url else None
        self._host = host
        self._port = port
        self._lock = threading.Lock()  # counters and recorded requests
        self._stop_event = threading.Event()
        self._journal = Journal(log_path)
        self._postbacks = Postbacks(
            count=self._count_for,
            stop_event=self._stop_event,
            workers=postback_workers,
            retries=postback_retries,
            backoff=postback_backoff,
            timeout=postback_timeout,
            max_backoff=postback_max_backoff,
            journal=self._journal,
        )
        self._server: Server | None = None
        self._serve_thread: threading.Thread | None = None
        self._connections: dict[socket.socket, threading.Thread] = {}
        self._conn_lock = threading.Lock()
        self._started = False
        self._stopped = False

    # ---- lifecycle

    def start(self) -> Self:
        if self._started:
            raise RuntimeError("PartnerSimulator can only be started once")
        self._started = True
        self._server = Server((self._host, self._port), self)
        self._port = int(self._server.server_address[1])
        self._serve_thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="partner-simulator-http",
            daemon=True,
        )
        self._serve_thread.start()
        self._postbacks.start()
        logger.info("partner simulator listening on %s", self.base_url)
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop serving: wakes hanging/sleeping handlers (they drop their connection), closes
        open connections and stops the postback workers. Undelivered postbacks are counted
        as failed; call :meth:`wait_idle` first to drain them. Idempotent."""
        if not self._started or self._stopped:
            self._stopped = True
            return
        self._stopped = True
        deadline = time.monotonic() + timeout
        self._stop_event.set()
        assert self._server is not None
        self._server.shutdown()
        with self._conn_lock:
            connections = list(self._connections.items())
        for conn, _thread in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        for _conn, thread in connections:
            thread.join(max(0.0, deadline - time.monotonic()))
        self._server.server_close()
        if self._serve_thread is not None:
            self._serve_thread.join(max(0.0, deadline - time.monotonic()))
        self._postbacks.stop(deadline)
        self._journal.close()

    def __enter__(self) -> Self:
        return self.start() if not self._started else self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # ---- addresses

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("PartnerSimulator is not started")
        return self._port

    @property
    def base_url(self) -> str:
        host = self._host
        if host in {"", "0.0.0.0"}:  # noqa: S104 - not binding, just naming a reachable host
            host = "127.0.0.1"
        return f"http://{host}:{self.port}"

    def url_for(self, slug: str, kind: Kind) -> str:
        if slug not in self._states:
            raise KeyError(f"unknown lender {slug!r}")
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
        return f"{self.base_url}/{slug}/{kind}"

    @property
    def lenders(self) -> tuple[SimulatedLender, ...]:
        return tuple(state.lender for state in self._states.values())

    # ---- inspection

    def stats(self) -> dict[str, dict[str, int]]:
        with self._lock:
            return {slug: dict(state.counters) for slug, state in self._states.items()}

    def received(self, slug: str) -> dict[str, list[dict[str, Any]]]:
        """Deep copies of what ``slug`` received: ``posts``, ``pings``, ``webhooks`` (decoded
        bodies, signed and valid JSON objects, in arrival order) and ``violations`` (one
        ``{"ping_id", "keys"}`` per ping that carried personal data)."""
        state = self._states[slug]
        with self._lock:
            return {
                "posts": copy.deepcopy(state.posts),
                "pings": copy.deepcopy(state.pings),
                "webhooks": copy.deepcopy(state.webhooks),
                "violations": copy.deepcopy(state.violations),
            }

    def deletion_requested(self, slug: str) -> frozenset[str]:
        """Lead ids whose applicants withdrew consent (from ``consent.withdrawn`` webhooks)."""
        state = self._states[slug]
        with self._lock:
            return frozenset(state.deletion_requested)

    def decision(self, slug: str, lead_id: str) -> dict[str, Any] | None:
        """The response body this lender gave to ``lead_id``'s post, if any."""
        state = self._states[slug]
        with self._lock:
            found = state.decisions.get(lead_id)
            return dict(found) if found is not None else None

    def wait_idle(self, timeout: float) -> bool:
        """Wait until every queued postback/ack has been delivered or given up on.
        True if idle, False on timeout. Work is queued before the HTTP answer is sent,
        so after a client has its response this covers that request's postbacks."""
        return self._postbacks.wait_idle(timeout)

    # ---- internals: bookkeeping

    def _count(self, state: _LenderState, key: str, n: int = 1) -> None:
        with self._lock:
            state.counters[key] += n

    def _count_for(self, slug: str, key: str) -> None:
        self._count(self._states[slug], key)

    def track_connection(self, conn: socket.socket, *, add: bool) -> None:
        with self._conn_lock:
            if add:
                self._connections[conn] = threading.current_thread()
            else:
                self._connections.pop(conn, None)
        if add and self._stop_event.is_set():
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)

    def _wait_or_drop(self, seconds: float) -> None:
        if seconds > 0 and self._stop_event.wait(seconds):
            raise DropConnection

    # ---- internals: request handling

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
