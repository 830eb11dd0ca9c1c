"""Partner lender simulator: a real HTTP server on loopback that plays N partner lenders.

Used by the demo, by end-to-end tests and by benchmarks. Standalone on purpose: this module
imports only the standard library, ``httpx`` and ``standardwebhooks`` (never Django or a
project app), so it can be run with ``python -m demo.server --config lenders.json``.

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

Fault injection (``error_rate``, ``garbage_rate``, ``timeout_rate``) applies to pings and
posts only, so a flaky lender still receives consent withdrawals. All random choices come
from one ``random.Random`` per lender seeded from the simulator seed and the slug, and a
fixed number of draws is taken per request, so a given sequence of requests always gets the
same answers.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import logging
import queue
import random
import re
import socket
import sys
import threading
import time
import uuid
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from decimal import ROUND_CEILING, ROUND_DOWN, ROUND_FLOOR, Decimal, InvalidOperation
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from socketserver import BaseServer, TCPServer
from types import TracebackType
from typing import Any, Literal, Protocol, Self
from urllib.parse import quote, urlsplit

import httpx
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

__all__ = [
    "PII_KEYS",
    "STAT_KEYS",
    "PartnerSimulator",
    "SimulatedLender",
    "SimulatorConfig",
    "SimulatorConfigError",
    "load_config",
    "main",
    "parse_config",
    "sign_headers",
]

logger = logging.getLogger(__name__)

Kind = Literal["post", "ping", "webhooks"]
KINDS: tuple[Kind, ...] = ("post", "ping", "webhooks")

#: Keys that must never appear (at any depth) in a ping.
PII_KEYS: frozenset[str] = frozenset(
    {
        "full_name",
        "phone",
        "national_id",
        "birth_date",
        "address",
        "employer",
        "monthly_income",
        "applicant",
    }
)

#: Counters reported by :meth:`PartnerSimulator.stats`, per lender.
STAT_KEYS: tuple[str, ...] = (
    "pings",  # signed, well-formed JSON pings received (including faulted ones)
    "bids",
    "ping_rejected",
    "posts",  # signed, well-formed JSON posts received (including faulted ones)
    "accepted",
    "rejected",
    "duplicates",  # posts for a lead_id already decided: first decision replayed
    "errors_injected",  # all injected faults: 500 + garbage + hang
    "http500_injected",
    "garbage_injected",
    "timeouts_injected",
    "bad_signatures",
    "bad_requests",  # 400: malformed JSON or a body that breaks the contract
    "pii_in_ping",
    "webhooks",
    "withdrawals",
    "events_sent",
    "events_failed",
    "acks_sent",
    "acks_failed",
)

_SLUG_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,99}$")
_CURRENCY_RE = re.compile(r"^[A-Z]{3}$")
_CENT = Decimal("0.01")
_APR_UNIT = Decimal("0.0001")
_MAX_BODY = 1024 * 1024
_POST_REJECT_REASONS = ("credit_policy", "affordability", "region_not_served", "capacity")
_PING_REJECT_REASONS = ("no_appetite", "capacity", "price_floor")
_UNDERWRITING_REJECT_REASONS = ("failed_verification", "credit_bureau", "affordability")
_GARBAGE_BODY = (
    b"<html><head><title>502 Bad Gateway</title></head>"
    b"<body><h1>Bad Gateway</h1><p>upstream connect error</p></body></html>"
)


class SimulatorConfigError(ValueError):
    """A lender or simulator configuration is invalid (message is meant for humans)."""


# --------------------------------------------------------------------------- signing


def sign_headers(
    secret: str, payload: bytes, msg_id: str | None = None, *, timestamp: int | None = None
) -> dict[str, str]:
    """Standard Webhooks headers (``webhook-id``, ``webhook-timestamp``,
    ``webhook-signature``) signing ``payload`` (the exact body bytes) with ``secret``.

    ``timestamp`` (Unix seconds) defaults to now; tests pass old values to check rejection.
    """
    msg_id = msg_id or f"msg_{uuid.uuid4().hex}"
    ts = int(time.time()) if timestamp is None else int(timestamp)
    signature = Webhook(secret).sign(msg_id, datetime.fromtimestamp(ts, tz=UTC), payload.decode())
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(ts),
        "webhook-signature": signature,
    }


# --------------------------------------------------------------------------- lenders


def _as_rate(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | str | Decimal):
        raise SimulatorConfigError(f"{name} must be a number between 0 and 1, got {value!r}")
    try:
        rate = float(value)
    except ValueError:
        raise SimulatorConfigError(
            f"{name} must be a number between 0 and 1, got {value!r}"
        ) from None
    if not 0.0 <= rate <= 1.0:
        raise SimulatorConfigError(f"{name} must be between 0 and 1, got {value!r}")
    return rate


def _as_decimal(name: str, value: object) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, int | float | str | Decimal):
        raise SimulatorConfigError(f"{name} must be a decimal number, got {value!r}")
    try:
        result = Decimal(str(value)) if isinstance(value, float) else Decimal(value)
    except InvalidOperation:
        raise SimulatorConfigError(f"{name} must be a decimal number, got {value!r}") from None
    if not result.is_finite() or result < 0:
        raise SimulatorConfigError(f"{name} must be a finite number >= 0, got {value!r}")
    return result


def _as_seconds(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise SimulatorConfigError(f"{name} must be a number, got {value!r}")
    if value < 0:
        raise SimulatorConfigError(f"{name} must be >= 0, got {value!r}")
    return float(value)


@dataclass(frozen=True)
class SimulatedLender:
    """One simulated partner lender and its behaviour knobs.

    Rates are probabilities in [0, 1]. ``error_rate``, ``garbage_rate`` and ``timeout_rate``
    are exclusive outcomes of one draw (their sum must be <= 1) and apply to pings and posts.
    Decimal fields accept ``Decimal``, ``str``, ``int`` or ``float``.
    """

    slug: str
    secret: str  # "whsec_<base64>"
    api_key: str | None = None  # None: no postbacks / acks
    latency_ms: float = 0
    accept_rate: float = 1.0
    bid_min: Decimal = Decimal("10.00")
    bid_max: Decimal = Decimal("50.00")
    ping_reject_rate: float = 0.0
    approval_rate: float = 1.0
    funding_rate: float = 1.0
    apr_min: Decimal = Decimal("0.1200")
    apr_max: Decimal = Decimal("0.2400")
    error_rate: float = 0.0
    garbage_rate: float = 0.0
    timeout_rate: float = 0.0
    hang_seconds: float = 30.0
    # Delay between a decision and the first postback (lenders are never instant; it also
    # keeps the platform from seeing an event before it has stored the post's response).
    outcome_delay_ms: float = 50
    # The currency this lender states on its bids and amounts; None: the one the platform
    # named (the ping's, the loan's). Set it to play a lender that bids in its own currency.
    currency: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.slug, str) or not _SLUG_RE.match(self.slug):
            raise SimulatorConfigError(
                f"slug must be letters, digits, '-' or '_' (not starting with '-'/'_'), "
                f"got {self.slug!r}"
            )
        if not isinstance(self.secret, str) or not self.secret.startswith("whsec_"):
            raise SimulatorConfigError(f"{self.slug}: secret must start with 'whsec_'")
        try:
            Webhook(self.secret)
        except Exception:
            raise SimulatorConfigError(
                f"{self.slug}: secret is not valid base64 after 'whsec_'"
            ) from None
        if self.api_key is not None and (not isinstance(self.api_key, str) or not self.api_key):
            raise SimulatorConfigError(f"{self.slug}: api_key must be a non-empty string or null")
        for name in (
            "accept_rate",
            "ping_reject_rate",
            "approval_rate",
            "funding_rate",
            "error_rate",
            "garbage_rate",
            "timeout_rate",
        ):
            object.__setattr__(self, name, _as_rate(f"{self.slug}: {name}", getattr(self, name)))
        for name in ("bid_min", "bid_max", "apr_min", "apr_max"):
            object.__setattr__(self, name, _as_decimal(f"{self.slug}: {name}", getattr(self, name)))
        for name in ("latency_ms", "hang_seconds", "outcome_delay_ms"):
            object.__setattr__(self, name, _as_seconds(f"{self.slug}: {name}", getattr(self, name)))
        if self.currency is not None and (
            not isinstance(self.currency, str) or not _CURRENCY_RE.match(self.currency)
        ):
            raise SimulatorConfigError(
                f"{self.slug}: currency must be an ISO 4217 code (e.g. CNY) or null"
            )
        if self.bid_min > self.bid_max:
            raise SimulatorConfigError(f"{self.slug}: bid_min must be <= bid_max")
        if self.apr_min > self.apr_max:
            raise SimulatorConfigError(f"{self.slug}: apr_min must be <= apr_max")
        if self.apr_max >= 10:
            raise SimulatorConfigError(
                f"{self.slug}: apr_min/apr_max are fractions (0.2150 = 21.5%), got {self.apr_max}"
            )
        if self.error_rate + self.garbage_rate + self.timeout_rate > 1.0 + 1e-9:
            raise SimulatorConfigError(
                f"{self.slug}: error_rate + garbage_rate + timeout_rate must be <= 1"
            )

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SimulatedLender:
        """Build from a JSON-like mapping; unknown or missing fields raise
        :class:`SimulatorConfigError`."""
        if not isinstance(data, Mapping):
            raise SimulatorConfigError(f"a lender must be a JSON object, got {data!r}")
        label = data.get("slug", "?")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise SimulatorConfigError(
                f"lender {label!r}: unknown field(s) {', '.join(unknown)} "
                f"(known: {', '.join(sorted(known))})"
            )
        missing = [name for name in ("slug", "secret") if name not in data]
        if missing:
            raise SimulatorConfigError(
                f"lender {label!r}: missing required field(s) {', '.join(missing)}"
            )
        try:
            return cls(**dict(data))
        except SimulatorConfigError:
            raise
        except (TypeError, ValueError) as exc:
            raise SimulatorConfigError(f"lender {label!r}: {exc}") from None


@dataclass(frozen=True)
class SimulatorConfig:
    lenders: tuple[SimulatedLender, ...]
    api_base_url: str | None = None
    seed: int = 0


def parse_config(data: object) -> SimulatorConfig:
    """Validate ``{"api_base_url": ..., "seed": 0, "lenders": [{...}, ...]}``."""
    if not isinstance(data, dict):
        raise SimulatorConfigError("config must be a JSON object with a 'lenders' list")
    unknown = sorted(set(data) - {"api_base_url", "lenders", "seed"})
    if unknown:
        raise SimulatorConfigError(
            f"unknown config field(s) {', '.join(unknown)} (known: api_base_url, lenders, seed)"
        )
    api_base_url = data.get("api_base_url")
    if api_base_url is not None:
        parts = urlsplit(api_base_url) if isinstance(api_base_url, str) else None
        if parts is None or parts.scheme not in {"http", "https"} or not parts.netloc:
            raise SimulatorConfigError(
                f"api_base_url must be an absolute http(s) URL or null, got {api_base_url!r}"
            )
    seed = data.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise SimulatorConfigError(f"seed must be an integer, got {seed!r}")
    raw_lenders = data.get("lenders")
    if not isinstance(raw_lenders, list) or not raw_lenders:
        raise SimulatorConfigError("config needs a non-empty 'lenders' list")
    lenders = tuple(SimulatedLender.from_dict(item) for item in raw_lenders)
    _check_unique_slugs(lenders)
    return SimulatorConfig(lenders=lenders, api_base_url=api_base_url, seed=seed)


def load_config(path: str | Path) -> SimulatorConfig:
    """Read and validate a JSON config file (see :func:`parse_config`)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SimulatorConfigError(f"config file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SimulatorConfigError(f"cannot read config file {path}: {exc}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SimulatorConfigError(f"config file {path} is not valid JSON: {exc}") from None
    return parse_config(data)


def _check_unique_slugs(lenders: Sequence[SimulatedLender]) -> None:
    seen: set[str] = set()
    for lender in lenders:
        if lender.slug in seen:
            raise SimulatorConfigError(f"duplicate lender slug {lender.slug!r}")
        seen.add(lender.slug)


# --------------------------------------------------------------------------- state


def _find_pii(value: object, prefix: str = "") -> list[str]:
    found: list[str] = []
    if isinstance(value, dict):
        for key, item in value.items():
            path = f"{prefix}{key}"
            if key in PII_KEYS:
                found.append(path)
            found.extend(_find_pii(item, path + "."))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found.extend(_find_pii(item, f"{prefix}{index}."))
    return found


def _now_iso() -> str:
    return datetime.now(tz=UTC).isoformat(timespec="milliseconds")


def _pick(options: Sequence[str], u: float) -> str:
    return options[min(int(u * len(options)), len(options) - 1)]


def _uniform_steps(low: Decimal, high: Decimal, step: Decimal, u: float) -> Decimal:
    """A value in [low, high] on the ``step`` grid, chosen by u in [0, 1)."""
    lo = (low / step).to_integral_value(rounding=ROUND_CEILING)
    hi = (high / step).to_integral_value(rounding=ROUND_FLOOR)
    if hi < lo:  # no grid point inside [low, high]
        return low
    count = int(hi - lo) + 1
    return ((lo + min(int(u * count), count - 1)) * step).quantize(step)


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


@dataclass
class _Delivery:
    url: str
    headers: dict[str, str]
    body: dict[str, Any]
    stamp_field: str  # filled with the time of the first attempt, kept across retries
    sent_counter: str
    failed_counter: str


@dataclass
class _Job:
    slug: str
    shard_key: str
    deliveries: list[_Delivery]
    due: float = 0.0


class _DropConnection(Exception):
    """Stop handling this request without answering (the simulator is stopping)."""


# --------------------------------------------------------------------------- HTTP


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # we track and join handler threads ourselves, with a deadline
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], simulator: PartnerSimulator) -> None:
        self.simulator = simulator
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind does a reverse DNS lookup (getfqdn), slow in some sandboxes.
        TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)

    def handle_error(self, request: Any, client_address: Any) -> None:
        logger.debug("partner simulator: error handling %s", client_address, exc_info=True)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "PartnerSimulator/1.0"
    sys_version = ""
    timeout = 300  # idle keep-alive connections
    disable_nagle_algorithm = True  # headers and body are separate writes: avoid 40 ms stalls
    server: _Server

    def __init__(self, request: Any, client_address: Any, server: BaseServer) -> None:
        assert isinstance(server, _Server)
        self.simulator = server.simulator
        super().__init__(request, client_address, server)

    def setup(self) -> None:
        super().setup()
        self.simulator._track_connection(self.connection, add=True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.simulator._track_connection(self.connection, add=False)

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("partner simulator: " + format, *args)

    # ---- responses

    def _send(self, status: int, body: bytes = b"", content_type: str = "application/json") -> None:
        self.send_response(status)
        if status != HTTPStatus.NO_CONTENT:
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body and status != HTTPStatus.NO_CONTENT:
            self.wfile.write(body)
        self.wfile.flush()

    def _send_json(self, status: int, payload: object) -> None:
        self._send(status, json.dumps(payload).encode())

    # ---- routing

    def do_GET(self) -> None:
        path = urlsplit(self.path).path.rstrip("/")
        if path == "/_health":
            self._send_json(200, {"status": "ok"})
        elif path == "/_stats":
            self._send_json(200, self.simulator.stats())
        else:
            self._send_json(404, {"error": "not_found"})

    def do_POST(self) -> None:
        try:
            self.simulator._handle_post(self)
        except _DropConnection:
            self.close_connection = True

    def read_body(self) -> bytes | None:
        """The request body, or None after answering 411/413 or on a broken chunked body."""
        length_header = self.headers.get("Content-Length")
        if length_header is None:
            self.close_connection = True
            self._send_json(411, {"error": "length_required"})
            return None
        try:
            length = int(length_header)
        except ValueError:
            self.close_connection = True
            self._send_json(400, {"error": "bad_content_length"})
            return None
        if length < 0 or length > _MAX_BODY:
            self.close_connection = True
            self._send_json(413, {"error": "payload_too_large"})
            return None
        return self.rfile.read(length)


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
    ) -> None:
        if not lenders:
            raise SimulatorConfigError("at least one lender is required")
        _check_unique_slugs(lenders)
        self._states: dict[str, _LenderState] = {
            lender.slug: _LenderState(lender, seed) for lender in lenders
        }
        self._api_base_url = api_base_url.rstrip("/") if api_base_url else None
        self._host = host
        self._port = port
        self._postback_retries = max(0, postback_retries)
        self._postback_backoff = max(0.0, postback_backoff)
        self._postback_timeout = postback_timeout
        self._lock = threading.Lock()  # counters and recorded requests
        self._stop_event = threading.Event()
        self._server: _Server | None = None
        self._serve_thread: threading.Thread | None = None
        self._connections: dict[socket.socket, threading.Thread] = {}
        self._conn_lock = threading.Lock()
        self._queues: list[queue.Queue[_Job | None]] = [
            queue.Queue() for _ in range(max(1, postback_workers))
        ]
        self._workers: list[threading.Thread] = []
        self._client: httpx.Client | None = None
        self._client_lock = threading.Lock()
        self._pending = 0
        self._accepting_jobs = True
        self._pending_cv = threading.Condition()
        self._started = False
        self._stopped = False

    # ---- lifecycle

    def start(self) -> Self:
        if self._started:
            raise RuntimeError("PartnerSimulator can only be started once")
        self._started = True
        self._server = _Server((self._host, self._port), self)
        self._port = int(self._server.server_address[1])
        self._serve_thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="partner-simulator-http",
            daemon=True,
        )
        self._serve_thread.start()
        for index, jobs in enumerate(self._queues):
            worker = threading.Thread(
                target=self._worker_loop,
                args=(jobs,),
                name=f"partner-simulator-postbacks-{index}",
                daemon=True,
            )
            worker.start()
            self._workers.append(worker)
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
        for jobs in self._queues:
            jobs.put(None)  # wakes the worker; jobs queued before it are failed, not sent
        for worker in self._workers:
            worker.join(max(0.0, deadline - time.monotonic()))
        with self._pending_cv:
            self._accepting_jobs = False
        with self._client_lock:
            if self._client is not None:
                self._client.close()
        for jobs in self._queues:  # anything queued after the sentinel
            while True:
                try:
                    job = jobs.get_nowait()
                except queue.Empty:
                    break
                if job is not None:
                    self._fail_deliveries(job.slug, job.deliveries)
                    self._job_done()

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
        with self._pending_cv:
            return self._pending_cv.wait_for(lambda: self._pending == 0, timeout)

    # ---- internals: bookkeeping

    def _count(self, state: _LenderState, key: str, n: int = 1) -> None:
        with self._lock:
            state.counters[key] += n

    def _track_connection(self, conn: socket.socket, *, add: bool) -> None:
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
            raise _DropConnection

    # ---- internals: request handling

    def _handle_post(self, handler: _Handler) -> None:
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

    def _inject_fault(self, handler: _Handler, state: _LenderState, u: float) -> bool:
        """Apply latency and maybe a fault; True if the request was answered (500/garbage)."""
        lender = state.lender
        self._wait_or_drop(lender.latency_ms / 1000)
        error_edge = lender.error_rate
        garbage_edge = error_edge + lender.garbage_rate
        timeout_edge = garbage_edge + lender.timeout_rate
        if u < error_edge:
            self._count(state, "errors_injected")
            self._count(state, "http500_injected")
            handler._send(500, b"Internal Server Error", "text/plain; charset=utf-8")
            return True
        if u < garbage_edge:
            self._count(state, "errors_injected")
            self._count(state, "garbage_injected")
            handler._send(200, _GARBAGE_BODY, "text/html; charset=utf-8")
            return True
        if u < timeout_edge:
            self._count(state, "errors_injected")
            self._count(state, "timeouts_injected")
            self._wait_or_drop(lender.hang_seconds)
        return False

    def _handle_ping(self, handler: _Handler, state: _LenderState, payload: dict[str, Any]) -> None:
        u_fault, u_reject, u_reason, u_bid = state.draw(4)
        pii = _find_pii(payload)
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
        if self._inject_fault(handler, state, u_fault):
            return
        if payload.get("type") != "lead.ping" or not payload.get("ping_id"):
            self._count(state, "bad_requests")
            handler._send_json(400, {"error": "bad_ping", "detail": "need type=lead.ping, ping_id"})
            return
        lender = state.lender
        if u_reject < lender.ping_reject_rate:
            self._count(state, "ping_rejected")
            handler._send_json(
                200, {"decision": "reject", "reason": _pick(_PING_REJECT_REASONS, u_reason)}
            )
            return
        bid = _uniform_steps(lender.bid_min, lender.bid_max, _CENT, u_bid)
        self._count(state, "bids")
        answer = {"decision": "bid", "bid": f"{bid:.2f}"}
        currency = lender.currency or payload.get("currency")
        if isinstance(currency, str):
            answer["currency"] = currency
        handler._send_json(200, answer)

    def _handle_lead_post(
        self, handler: _Handler, state: _LenderState, payload: dict[str, Any]
    ) -> None:
        u = state.draw(9)
        with self._lock:
            state.posts.append(copy.deepcopy(payload))
            state.counters["posts"] += 1
        if self._inject_fault(handler, state, u[0]):
            return
        lead_id = payload.get("lead_id")
        loan = payload.get("loan")
        amount: Decimal | None = None
        currency: str | None = state.lender.currency
        if isinstance(loan, dict) and currency is None and isinstance(loan.get("currency"), str):
            currency = loan["currency"]
        if isinstance(loan, dict):
            try:
                amount = Decimal(str(loan.get("amount")))
            except InvalidOperation:
                amount = None
        if (
            payload.get("type") != "lead.post"
            or not isinstance(lead_id, str)
            or not lead_id
            or amount is None
            or not amount.is_finite()
            or amount <= 0
        ):
            self._count(state, "bad_requests")
            handler._send_json(
                400,
                {"error": "bad_post", "detail": "need type=lead.post, lead_id, loan.amount > 0"},
            )
            return
        lender = state.lender
        job: _Job | None = None
        with self._lock:
            response = state.decisions.get(lead_id)
            if response is not None:
                state.counters["duplicates"] += 1
            else:
                if u[1] < lender.accept_rate:
                    reference = f"{lender.slug.upper()}-{int(u[3] * 16**10):010X}"
                    response = {"decision": "accept", "reference": reference}
                    state.counters["accepted"] += 1
                    job = self._outcome_job(state, lead_id, amount, currency, u)
                else:
                    response = {"decision": "reject", "reason": _pick(_POST_REJECT_REASONS, u[2])}
                    state.counters["rejected"] += 1
                state.decisions[lead_id] = response
        if job is not None:
            self._reserve_job()  # before answering, so wait_idle() after the reply sees it
        try:
            handler._send_json(200, response)
        finally:
            if job is not None:
                self._submit(job, lender)

    def _outcome_job(
        self,
        state: _LenderState,
        lead_id: str,
        requested: Decimal,
        currency: str | None,
        u: list[float],
    ) -> _Job | None:
        lender = state.lender
        if self._api_base_url is None or lender.api_key is None:
            return None
        u_approve, u_fund, u_full, u_pct, u_apr, u_reason = u[4], u[5], u[6], u[7], u[8], u[2]
        url = f"{self._api_base_url}/api/v1/partner/leads/{quote(lead_id, safe='')}/events"
        bodies: list[dict[str, Any]] = [{"type": "accepted"}]
        if u_approve < lender.approval_rate:
            approved = requested.quantize(_CENT, rounding=ROUND_DOWN)
            if u_full >= 0.7:  # 30%: a bit less than asked (80-99%)
                cut = (requested * (80 + min(int(u_pct * 20), 19)) / 100).quantize(
                    _CENT, rounding=ROUND_DOWN
                )
                approved = cut if cut > 0 else approved
            apr = _uniform_steps(lender.apr_min, lender.apr_max, _APR_UNIT, u_apr)
            in_currency = {"currency": currency} if currency else {}
            bodies.append(
                {
                    "type": "approved",
                    "amount": f"{approved:.2f}",
                    "apr": f"{apr:.4f}",
                    **in_currency,
                }
            )
            if u_fund < lender.funding_rate:
                bodies.append({"type": "funded", "principal": f"{approved:.2f}", **in_currency})
        else:
            bodies.append(
                {"type": "rejected", "reason": _pick(_UNDERWRITING_REJECT_REASONS, u_reason)}
            )
        deliveries = []
        for extra in bodies:
            event_id = f"{lender.slug}-{lead_id}-{extra['type']}"
            body = {"event_id": event_id, "type": extra["type"], "occurred_at": "", **extra}
            deliveries.append(
                _Delivery(
                    url=url,
                    headers=self._api_headers(lender, idempotency_key=event_id),
                    body=body,
                    stamp_field="occurred_at",
                    sent_counter="events_sent",
                    failed_counter="events_failed",
                )
            )
        return _Job(slug=lender.slug, shard_key=lead_id, deliveries=deliveries)

    def _handle_webhook(
        self, handler: _Handler, state: _LenderState, payload: dict[str, Any]
    ) -> None:
        event_type = payload.get("type")
        data = payload.get("data")
        with self._lock:
            state.webhooks.append(copy.deepcopy(payload))
            state.counters["webhooks"] += 1
        if not isinstance(event_type, str) or not isinstance(data, dict):
            self._count(state, "bad_requests")
            handler._send_json(400, {"error": "bad_webhook", "detail": "need type and data"})
            return
        job: _Job | None = None
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
            job = self._ack_job(state, withdrawal_id, lead_ids)
        self._wait_or_drop(state.lender.latency_ms / 1000)
        if job is not None:
            self._reserve_job()
        try:
            handler._send(204)
        finally:
            if job is not None:
                self._submit(job, state.lender)

    def _ack_job(
        self, state: _LenderState, withdrawal_id: object, lead_ids: list[str]
    ) -> _Job | None:
        lender = state.lender
        if self._api_base_url is None or lender.api_key is None:
            return None
        if not isinstance(withdrawal_id, str | int) or isinstance(withdrawal_id, bool):
            return None
        wid = quote(str(withdrawal_id), safe="")
        url = f"{self._api_base_url}/api/v1/partner/consent-withdrawals/{wid}/ack"
        delivery = _Delivery(
            url=url,
            headers=self._api_headers(lender, idempotency_key=f"{lender.slug}-ack-{withdrawal_id}"),
            body={"withdrawal_id": str(withdrawal_id), "lead_ids": list(lead_ids)},
            stamp_field="acknowledged_at",
            sent_counter="acks_sent",
            failed_counter="acks_failed",
        )
        return _Job(slug=lender.slug, shard_key=str(withdrawal_id), deliveries=[delivery])

    @staticmethod
    def _api_headers(lender: SimulatedLender, *, idempotency_key: str) -> dict[str, str]:
        return {
            "Authorization": f"Bearer {lender.api_key}",
            "Idempotency-Key": idempotency_key,
            "Content-Type": "application/json",
            "Accept": "application/json",
            "User-Agent": f"PartnerSimulator/1.0 ({lender.slug})",
        }

    # ---- internals: postback workers

    def _reserve_job(self) -> None:
        with self._pending_cv:
            self._pending += 1

    def _job_done(self) -> None:
        with self._pending_cv:
            self._pending -= 1
            if self._pending <= 0:
                self._pending_cv.notify_all()

    def _submit(self, job: _Job, lender: SimulatedLender) -> None:
        """Queue a job whose slot was taken with :meth:`_reserve_job`. Jobs of one lead go
        to one worker, so its events are delivered in order."""
        job.due = time.monotonic() + lender.outcome_delay_ms / 1000
        with self._pending_cv:
            if self._accepting_jobs:
                shard = zlib.crc32(job.shard_key.encode()) % len(self._queues)
                self._queues[shard].put(job)
                return
        self._fail_deliveries(job.slug, job.deliveries)
        self._job_done()

    def _fail_deliveries(self, slug: str, deliveries: Sequence[_Delivery]) -> None:
        state = self._states[slug]
        with self._lock:
            for delivery in deliveries:
                state.counters[delivery.failed_counter] += 1

    def _http_client(self) -> httpx.Client:
        """One client shared by the workers (thread-safe), created on first use."""
        with self._client_lock:
            if self._client is None:
                self._client = httpx.Client(timeout=self._postback_timeout)
            return self._client

    def _worker_loop(self, jobs: queue.Queue[_Job | None]) -> None:
        while True:
            job = jobs.get()
            if job is None:
                return
            try:
                if self._stop_event.is_set():
                    self._fail_deliveries(job.slug, job.deliveries)
                else:
                    self._run_job(self._http_client(), job)
            except Exception:  # never let a worker die
                logger.exception("partner simulator: postback job crashed")
                self._fail_deliveries(job.slug, job.deliveries)
            finally:
                self._job_done()

    def _run_job(self, client: httpx.Client, job: _Job) -> None:
        delay = job.due - time.monotonic()
        if delay > 0 and self._stop_event.wait(delay):
            self._fail_deliveries(job.slug, job.deliveries)
            return
        for index, delivery in enumerate(job.deliveries):
            if not self._deliver(client, job.slug, delivery):
                # Later events make no sense to the platform without this one.
                self._fail_deliveries(job.slug, job.deliveries[index:])
                return
            state = self._states[job.slug]
            self._count(state, delivery.sent_counter)

    def _deliver(self, client: httpx.Client, slug: str, delivery: _Delivery) -> bool:
        if not delivery.body.get(delivery.stamp_field):
            delivery.body[delivery.stamp_field] = _now_iso()
        content = json.dumps(delivery.body).encode()
        for attempt in range(self._postback_retries + 1):
            if attempt:
                backoff = self._postback_backoff * 2 ** (attempt - 1)
                if self._stop_event.wait(backoff):
                    return False
            try:
                response = client.post(delivery.url, content=content, headers=delivery.headers)
            except httpx.TransportError as exc:
                logger.debug("partner simulator: %s postback to %s: %r", slug, delivery.url, exc)
                continue
            except httpx.HTTPError as exc:  # e.g. an invalid URL: retrying will not help
                logger.warning("partner simulator: %s postback failed: %r", slug, exc)
                return False
            if 200 <= response.status_code < 300:
                return True
            # 409: the platform is still processing the same Idempotency-Key.
            if response.status_code >= 500 or response.status_code in {409, 429}:
                continue
            logger.warning(
                "partner simulator: %s postback to %s refused: %s %s",
                slug,
                delivery.url,
                response.status_code,
                response.text[:200],
            )
            return False
        logger.warning("partner simulator: %s postback to %s gave up", slug, delivery.url)
        return False


# --------------------------------------------------------------------------- CLI


def describe(simulator: PartnerSimulator) -> list[str]:
    """Human-readable lines: each lender's ping/post/webhook URLs."""
    lines = [f"Partner simulator listening on {simulator.base_url}"]
    for lender in simulator.lenders:
        lines.append(f"  {lender.slug}:")
        for kind in KINDS:
            lines.append(f"    {kind:<8} {simulator.url_for(lender.slug, kind)}")
    return lines


class Writable(Protocol):
    def write(self, text: str, /) -> object: ...

    def flush(self) -> object: ...


def serve(
    config: SimulatorConfig,
    *,
    host: str = "127.0.0.1",
    port: int = 8900,
    duration: float | None = None,
    out: Writable | None = None,
) -> dict[str, dict[str, int]]:
    """Run until Ctrl-C (or ``duration`` seconds), printing URLs first and stats last."""
    stream: Writable = out if out is not None else sys.stdout

    def emit(line: str) -> None:
        stream.write(line + "\n")
        stream.flush()

    simulator = PartnerSimulator(
        config.lenders, api_base_url=config.api_base_url, host=host, port=port, seed=config.seed
    )
    simulator.start()
    try:
        for line in describe(simulator):
            emit(line)
        if config.api_base_url:
            emit(f"Outcome postbacks go to {config.api_base_url}")
        emit("Serving; press Ctrl-C to stop.")
        deadline = None if duration is None else time.monotonic() + duration
        try:
            while deadline is None or time.monotonic() < deadline:
                left = 0.2 if deadline is None else deadline - time.monotonic()
                time.sleep(max(0.0, min(0.2, left)))
        except KeyboardInterrupt:
            pass
        simulator.wait_idle(2.0)
    finally:
        simulator.stop()
    stats = simulator.stats()
    emit("Stats:")
    emit(json.dumps(stats, indent=2))
    return stats


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Simulated partner lenders.")
    parser.add_argument("--config", required=True, help="JSON config file")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8900)
    parser.add_argument("--duration", type=float, default=None, help="seconds (default: forever)")
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config)
    except SimulatorConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    serve(config, host=args.host, port=args.port, duration=args.duration)
    return 0


if __name__ == "__main__":
    sys.exit(main())
