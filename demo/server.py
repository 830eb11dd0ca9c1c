"""Partner lender simulator: a real HTTP server on loopback that plays N partner lenders.

Used by the demo, by end-to-end tests and by benchmarks. Standalone on purpose: the
simulator (this module: lifecycle, addresses, inspection; its endpoints in
:mod:`demo.lender_endpoints`, per-lender state in :mod:`demo.lender_state`, lender
behaviour in :mod:`demo.lenders`, the HTTP layer in :mod:`demo.transport`, reports back
to the platform in :mod:`demo.postbacks`, the config file in :mod:`demo.config`) imports
only the standard library, ``httpx`` and ``standardwebhooks`` (never Django or a project
app), so it can be run with ``python -m demo.cli --config lenders.json``.

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
import logging
import socket
import threading
import time
from collections.abc import Sequence
from types import TracebackType
from typing import Any, Self

from demo.config import SimulatorConfigError, check_unique_slugs
from demo.journal import Journal
from demo.lender_endpoints import KINDS, Kind, LenderEndpoints
from demo.lender_state import STAT_KEYS, _LenderState
from demo.lenders import SimulatedLender
from demo.postbacks import Postbacks
from demo.transport import Server

__all__ = ["KINDS", "STAT_KEYS", "PartnerSimulator"]

logger = logging.getLogger(__name__)


class PartnerSimulator(LenderEndpoints):
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
