"""The one outbound HTTP client: every call to a partner (pings, posts, webhooks) goes here.

What it owns, so that callers keep only what differs (payload, signature, what an answer
means):

- **Pooled connections.** One sync client per process for posts and webhooks (shared by its
  threads, made again after a fork so prefork workers never share sockets); for pings, one
  event loop per worker thread and one small async client per ping URL (see
  :class:`_PingClients`).
- **The address check at connect time.** The transport resolves the partner's host once,
  refuses it unless every address is public (``partners.urlsafety``; not checked when
  ``ALLOW_PRIVATE_PARTNER_URLS``), and connects to exactly the addresses it resolved, while
  the Host header and TLS SNI/certificate check stay the host name. A name that answers a
  public address to a check and a private one to the connection (DNS rebinding) cannot
  steer us into our own network.
- **Per-call timeouts**, and **one classification** of what happened (:class:`Outcome`)
  with a reason a human can act on, and **one retry policy** (:class:`RetryPolicy`) for
  posts and webhooks (pings do not retry: the auction's budget bounds them).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import ssl
import threading
import time
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum

import certifi
import httpcore
import httpx

from partners.urlsafety import (
    MalformedUrlError,
    UnresolvableHostError,
    UnsafeUrlError,
    check_url_form,
    private_allowed,
    public_addresses,
    resolve,
)

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT_SECONDS = 10.0


class Kind(StrEnum):
    DELIVERED = "delivered"  # a 2xx answer (what its body means is the caller's business)
    HTTP_ERROR = "http_error"  # any other answer, redirects included (never followed)
    TIMEOUT = "timeout"
    TRANSPORT_ERROR = "transport_error"  # connect refused, reset, protocol error, TLS ...
    INVALID_URL = "invalid_url"  # a URL we cannot send to: the partner must fix it
    REFUSED_ADDRESS = "refused_address"  # a URL leading into our own network, or not https


@dataclass(frozen=True, slots=True)
class Outcome:
    kind: Kind
    reason: str  # empty when delivered; else short, for humans, never personal data
    latency_ms: int
    response: httpx.Response | None = None

    @property
    def status(self) -> int | None:
        return self.response.status_code if self.response is not None else None

    @property
    def delivered(self) -> bool:
        return self.kind == Kind.DELIVERED


def classify_response(response: httpx.Response) -> tuple[Kind, str]:
    if response.is_redirect:
        return Kind.HTTP_ERROR, f"redirect {response.status_code} not followed"
    if not response.is_success:
        return Kind.HTTP_ERROR, f"http {response.status_code}"
    return Kind.DELIVERED, ""


def classify_error(exc: BaseException) -> tuple[Kind, str]:
    """The one table from an exception raised while sending to (kind, reason)."""
    if isinstance(exc, TimeoutError | httpx.TimeoutException):
        return Kind.TIMEOUT, "timed out"
    if isinstance(exc, MalformedUrlError):
        return Kind.INVALID_URL, str(exc)
    if isinstance(exc, UnsafeUrlError):
        return Kind.REFUSED_ADDRESS, str(exc)
    # InvalidURL (e.g. a control character) and UnicodeError (a host name IDNA cannot
    # encode) are not HTTPErrors, but they are the partner's bad URL, not our crash.
    if isinstance(exc, httpx.InvalidURL | httpx.UnsupportedProtocol | UnicodeError):
        return Kind.INVALID_URL, type(exc).__name__
    if isinstance(exc, httpx.HTTPError):
        return Kind.TRANSPORT_ERROR, type(exc).__name__
    return Kind.TRANSPORT_ERROR, f"unexpected {type(exc).__name__}"


@dataclass(frozen=True)
class RetryPolicy:
    """Which outcomes are worth another attempt, and when. One rule for posts and webhooks;
    each has its own schedule (a post is worth minutes, a webhook about three days)."""

    schedule: tuple[timedelta, ...]  # delay before attempt n+1 after attempt n failed

    @staticmethod
    def retryable(outcome: Outcome) -> bool:
        """Final: a URL that cannot work until someone changes it, and 410 Gone (the partner
        says the endpoint is gone for good). Anything else may pass: a timeout, a dropped
        connection, a 5xx, or a 2xx whose body the caller could not use."""
        if outcome.kind in {Kind.INVALID_URL, Kind.REFUSED_ADDRESS}:
            return False
        return outcome.status != 410

    def delay_after(self, attempts: int) -> timedelta:
        """The wait after ``attempts`` failed attempts (the last step repeats)."""
        return self.schedule[min(max(attempts, 1) - 1, len(self.schedule) - 1)]


# Webhooks: 5 s ... 24 h, about three days in all; then the message fails (replayable).
WEBHOOK_RETRIES = RetryPolicy(
    (
        timedelta(seconds=5),
        timedelta(minutes=5),
        timedelta(minutes=30),
        timedelta(hours=2),
        timedelta(hours=5),
        timedelta(hours=10),
        timedelta(hours=14),
        timedelta(hours=20),
        timedelta(hours=24),
    )
)
# Posts: 10 s, 20 s, 40 s, ... (settings.DELIVERY_MAX_RETRIES of them): a lead goes stale,
# and an auction winner that cannot take it falls back to the next bidder.
POST_RETRIES = RetryPolicy(tuple(timedelta(seconds=10 * 2**n) for n in range(12)))


# --- The connect-time address check -----------------------------------------------------


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _checked(host: str, port: int) -> list[str]:
    """Where to connect for host: its addresses, resolved once here, and all public unless
    private URLs are allowed (development). A name with no address is a connect error
    (possibly passing, so retryable), as it would be without this check."""
    try:
        if not private_allowed():
            return public_addresses(host, port)
        return [host] if _is_ip(host) else resolve(host, port)
    except UnresolvableHostError as exc:
        raise httpcore.ConnectError(str(exc)) from None


class _GuardedBackend(httpcore.NetworkBackend):
    """Connects only to addresses that passed the check, resolved in the same call."""

    def __init__(self) -> None:
        self._inner = httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[typing.Any] | None = None,
    ) -> httpcore.NetworkStream:
        error: Exception | None = None
        for address in _checked(host, port):
            try:
                return self._inner.connect_tcp(
                    address, port, timeout, local_address, socket_options
                )
            except httpcore.ConnectError as exc:  # the next address, as create_connection does
                error = exc
        assert error is not None
        raise error

    def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[typing.Any] | None = None,
    ) -> httpcore.NetworkStream:
        raise UnsafeUrlError("partner URLs are TCP only")

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


class _AsyncGuardedBackend(httpcore.AsyncNetworkBackend):
    def __init__(self) -> None:
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[typing.Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        if _is_ip(host):
            addresses = _checked(host, port)  # no DNS: nothing to wait for
        else:
            loop = asyncio.get_running_loop()
            addresses = await loop.run_in_executor(None, _checked, host, port)
        error: Exception | None = None
        for address in addresses:
            try:
                return await self._inner.connect_tcp(
                    address, port, timeout, local_address, socket_options
                )
            except httpcore.ConnectError as exc:
                error = exc
        assert error is not None
        raise error

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[typing.Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise UnsafeUrlError("partner URLs are TCP only")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


def _tls() -> ssl.SSLContext:
    # Loading the CA bundle takes tens of milliseconds: once per client, never per call.
    return ssl.create_default_context(cafile=certifi.where())


def _transport(limits: httpx.Limits, tls: ssl.SSLContext) -> httpx.HTTPTransport:
    transport = httpx.HTTPTransport(verify=tls, limits=limits, trust_env=False)
    # httpx has no public hook for the network backend: the pool it builds is swapped for
    # the same pool on the guarded backend (tests/partners/test_http.py proves it holds).
    transport._pool = httpcore.ConnectionPool(
        ssl_context=tls,
        max_connections=limits.max_connections,
        max_keepalive_connections=limits.max_keepalive_connections,
        keepalive_expiry=limits.keepalive_expiry,
        network_backend=_GuardedBackend(),
    )
    return transport


def _async_transport(limits: httpx.Limits, tls: ssl.SSLContext) -> httpx.AsyncHTTPTransport:
    transport = httpx.AsyncHTTPTransport(verify=tls, limits=limits, trust_env=False)
    transport._pool = httpcore.AsyncConnectionPool(
        ssl_context=tls,
        max_connections=limits.max_connections,
        max_keepalive_connections=limits.max_keepalive_connections,
        keepalive_expiry=limits.keepalive_expiry,
        network_backend=_AsyncGuardedBackend(),
    )
    return transport


# --- Sending ------------------------------------------------------------------------------

_sync_lock = threading.Lock()
_sync: tuple[int, httpx.Client] | None = None


def _client() -> httpx.Client:
    """One pooled client per process, shared by its threads: keep-alive connections and a
    TLS context built once (building one per POST costs more than the POST itself). Made
    lazily and again after a fork, so prefork Celery workers never share sockets."""
    global _sync
    current = _sync
    if current is None or current[0] != os.getpid():
        with _sync_lock:
            current = _sync
            if current is None or current[0] != os.getpid():
                limits = httpx.Limits(max_connections=200, max_keepalive_connections=50)
                client = httpx.Client(
                    transport=_transport(limits, _tls()),
                    timeout=DEFAULT_TIMEOUT_SECONDS,
                    follow_redirects=False,
                    trust_env=False,
                )
                current = _sync = (os.getpid(), client)
    return current[1]


def post(
    url: str,
    *,
    body: bytes,
    headers: Mapping[str, str],
    timeout: float = DEFAULT_TIMEOUT_SECONDS,
) -> Outcome:
    """POST body to a partner; never raises. ``timeout`` bounds each socket operation."""
    started = time.monotonic()
    try:
        check_url_form(url)
        response = _client().post(url, content=body, headers=headers, timeout=timeout)
    except Exception as exc:
        return _failed(exc, started)
    kind, reason = classify_response(response)
    return Outcome(kind, reason, _ms(started), response)


def _failed(exc: Exception, started: float) -> Outcome:
    kind, reason = classify_error(exc)
    if reason.startswith("unexpected"):
        # Whatever one partner's call does must not sink the batch or the auction it is in.
        logger.warning("partner call failed unexpectedly: %s", type(exc).__name__)
    return Outcome(kind, reason[:200], _ms(started))


def _ms(started: float) -> int:
    return int((time.monotonic() - started) * 1000)


class _PingClients(threading.local):
    """One event loop per worker thread and one HTTP client per ping URL, i.e. per partner
    (per process, too: a forked Celery child must not reuse its parent's sockets). A client
    per partner keeps each connection pool tiny: httpcore scans its whole pool on every
    request, so one pool for every partner would cost O(partners²) per auction."""

    pid = 0
    loop: asyncio.AbstractEventLoop
    clients: dict[str, httpx.AsyncClient]
    tls: ssl.SSLContext

    def get_loop(self) -> asyncio.AbstractEventLoop:
        if self.pid != os.getpid():
            self.loop = asyncio.new_event_loop()
            self.clients = {}
            self.tls = _tls()
            self.pid = os.getpid()
        return self.loop

    def client(self, url: str) -> httpx.AsyncClient:
        client = self.clients.get(url)
        if client is None:
            if len(self.clients) >= MAX_PING_CLIENTS:
                # Partners come and go: forget the oldest (its sockets close when collected).
                self.clients.pop(next(iter(self.clients)))
            limits = httpx.Limits(max_keepalive_connections=4, keepalive_expiry=60)
            client = httpx.AsyncClient(
                transport=_async_transport(limits, self.tls),
                follow_redirects=False,
                trust_env=False,
            )
            self.clients[url] = client
        return client


_pings = _PingClients()
MAX_PING_CLIENTS = 512


def event_loop() -> asyncio.AbstractEventLoop:
    """This worker thread's loop, on which :func:`apost` calls run."""
    return _pings.get_loop()


async def apost(url: str, *, body: bytes, headers: Mapping[str, str], timeout: float) -> Outcome:
    """POST body to a partner on this thread's loop; never raises. ``timeout`` bounds the
    whole exchange (connect, send, wait, read), not each socket operation."""
    started = time.monotonic()
    try:
        check_url_form(url)
        client = _pings.client(url)
        # wait_for bounds the whole exchange; httpx's own timeout is per socket operation.
        response = await asyncio.wait_for(
            client.post(url, content=body, headers=headers, timeout=timeout + 1),
            timeout=timeout,
        )
    except Exception as exc:
        return _failed(exc, started)
    kind, reason = classify_response(response)
    return Outcome(kind, reason, _ms(started), response)
