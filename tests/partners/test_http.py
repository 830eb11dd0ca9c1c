"""The one outbound client: the address is checked when the connection is made, on the
address actually connected to (no DNS rebinding window); one classification of outcomes;
one retry policy."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from partners import http

PUBLIC = "93.184.215.14"
HOST = "partner.example"


class Server:
    """A loopback HTTP server that records the Host header of every request it answers."""

    def __init__(self, status: int = 204) -> None:
        hosts = self.hosts = []  # type: list[str]

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("content-length") or 0))
                hosts.append(self.headers["host"])
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_port
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def server() -> Iterator[Server]:
    made = Server()
    yield made
    made.server.shutdown()
    made.server.server_close()


class Resolver:
    """A DNS for HOST answering each lookup with the next of ``answers`` (the last one
    repeats); every other name resolves as usual."""

    def __init__(self, *answers: str) -> None:
        self.answers = list(answers)
        self.lookups = 0
        self.real = socket.getaddrinfo

    def __call__(self, host: Any, port: Any, *args: Any, **kwargs: Any) -> list[Any]:
        if host != HOST:
            return self.real(host, port, *args, **kwargs)
        address = self.answers[min(self.lookups, len(self.answers) - 1)]
        self.lookups += 1
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))]


@pytest.fixture
def production(settings: Any) -> None:
    settings.ALLOW_PRIVATE_PARTNER_URLS = False


def send(url: str, *, asynchronous: bool) -> http.Outcome:
    if asynchronous:
        return http.event_loop().run_until_complete(
            http.apost(url, body=b"{}", headers={}, timeout=2)
        )
    return http.post(url, body=b"{}", headers={}, timeout=2)


# --- The address check at connect time -----------------------------------------------------


@pytest.mark.usefixtures("production")
@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync", "async"])
def test_a_host_resolving_to_loopback_is_refused_when_it_connects(
    monkeypatch: pytest.MonkeyPatch, server: Server, asynchronous: bool
) -> None:
    monkeypatch.setattr(socket, "getaddrinfo", Resolver("127.0.0.1"))

    outcome = send(f"https://{HOST}:{server.port}/hooks", asynchronous=asynchronous)

    assert outcome.kind == http.Kind.REFUSED_ADDRESS
    assert outcome.reason == f"{HOST!r} resolves to a non-public address"
    assert outcome.response is None and server.hosts == []


@pytest.mark.usefixtures("production")
@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync", "async"])
def test_dns_rebinding_cannot_move_the_connection_after_the_check(
    monkeypatch: pytest.MonkeyPatch, server: Server, asynchronous: bool
) -> None:
    """The name answers a public address first and loopback afterwards: the connection goes
    to the address that was checked, never to a second lookup's answer."""
    resolver = Resolver(PUBLIC, "127.0.0.1")
    monkeypatch.setattr(socket, "getaddrinfo", resolver)
    dialled: list[tuple[str, int]] = []
    real_connect = socket.create_connection

    def create_connection(address: tuple[str, int], *args: Any, **kwargs: Any) -> Any:
        dialled.append(address)
        if address[0] == PUBLIC:  # no Internet in tests: the public host refuses
            raise ConnectionRefusedError(111, "Connection refused")
        return real_connect(address, *args, **kwargs)

    monkeypatch.setattr(socket, "create_connection", create_connection)
    if asynchronous:  # the event loop's connect, as httpcore's anyio backend calls it
        import anyio

        real_anyio = anyio.connect_tcp

        async def connect_tcp(remote_host: str, remote_port: int, **kwargs: Any) -> Any:
            dialled.append((remote_host, remote_port))
            if remote_host == PUBLIC:
                raise ConnectionRefusedError(111, "Connection refused")
            return await real_anyio(remote_host, remote_port, **kwargs)

        monkeypatch.setattr(anyio, "connect_tcp", connect_tcp)

    outcome = send(f"https://{HOST}:{server.port}/hooks", asynchronous=asynchronous)

    assert dialled == [(PUBLIC, server.port)]
    assert resolver.lookups == 1
    assert server.hosts == []
    assert (outcome.kind, outcome.reason) == (http.Kind.TRANSPORT_ERROR, "ConnectError")


@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync", "async"])
def test_the_connection_goes_to_the_resolved_address_with_the_host_name_kept(
    settings: Any, monkeypatch: pytest.MonkeyPatch, server: Server, asynchronous: bool
) -> None:
    settings.ALLOW_PRIVATE_PARTNER_URLS = True  # development: loopback partners allowed
    resolver = Resolver("127.0.0.1", "192.0.2.1")  # a second lookup would go nowhere
    monkeypatch.setattr(socket, "getaddrinfo", resolver)

    outcome = send(f"http://{HOST}:{server.port}/hooks", asynchronous=asynchronous)

    assert (outcome.kind, outcome.status) == (http.Kind.DELIVERED, 204)
    assert server.hosts == [f"{HOST}:{server.port}"]
    assert resolver.lookups == 1


@pytest.mark.usefixtures("production")
def test_a_host_with_no_address_is_a_connect_error_that_may_pass(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def fail(*args: Any, **kwargs: Any) -> Any:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", fail)

    outcome = http.post(f"https://{HOST}/hooks", body=b"{}", headers={}, timeout=2)

    assert (outcome.kind, outcome.reason) == (http.Kind.TRANSPORT_ERROR, "ConnectError")
    assert http.WEBHOOK_RETRIES.retryable(outcome)


# --- One classification -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "kind", "reason"),
    [
        (200, http.Kind.DELIVERED, ""),
        (204, http.Kind.DELIVERED, ""),
        (302, http.Kind.HTTP_ERROR, "redirect 302 not followed"),
        (308, http.Kind.HTTP_ERROR, "redirect 308 not followed"),
        (404, http.Kind.HTTP_ERROR, "http 404"),
        (410, http.Kind.HTTP_ERROR, "http 410"),
        (500, http.Kind.HTTP_ERROR, "http 500"),
    ],
)
def test_answers_are_classified_by_status(status: int, kind: http.Kind, reason: str) -> None:
    headers = {"location": "/elsewhere"} if 300 <= status < 400 else {}
    assert http.classify_response(httpx.Response(status, headers=headers)) == (kind, reason)


@pytest.mark.parametrize(
    ("error", "kind", "reason"),
    [
        (httpx.ReadTimeout("slow"), http.Kind.TIMEOUT, "timed out"),
        (httpx.ConnectTimeout("slow"), http.Kind.TIMEOUT, "timed out"),
        (TimeoutError(), http.Kind.TIMEOUT, "timed out"),
        (httpx.ConnectError("refused"), http.Kind.TRANSPORT_ERROR, "ConnectError"),
        (httpx.RemoteProtocolError("eh"), http.Kind.TRANSPORT_ERROR, "RemoteProtocolError"),
        (httpx.InvalidURL("bad"), http.Kind.INVALID_URL, "InvalidURL"),
        (UnicodeError("label too long"), http.Kind.INVALID_URL, "UnicodeError"),
        (httpx.UnsupportedProtocol("x"), http.Kind.INVALID_URL, "UnsupportedProtocol"),
        (RuntimeError("bug"), http.Kind.TRANSPORT_ERROR, "unexpected RuntimeError"),
    ],
)
def test_errors_are_classified_once(error: Exception, kind: http.Kind, reason: str) -> None:
    assert http.classify_error(error) == (kind, reason)


@pytest.mark.parametrize(
    ("url", "private_allowed", "kind", "reason"),
    [
        ("http://[::1/post", True, http.Kind.INVALID_URL, "partner URL is malformed"),
        ("ftp://partner.example/x", True, http.Kind.INVALID_URL, "absolute http(s)"),
        ("http://127.0.0.1:9/po\x7fst", True, http.Kind.INVALID_URL, "InvalidURL"),
        ("http://" + "a" * 70 + ".example/x", True, http.Kind.INVALID_URL, "UnicodeError"),
        ("http://127.0.0.1:9/hooks", True, http.Kind.TRANSPORT_ERROR, "ConnectError"),
        ("http://93.184.215.14/hooks", False, http.Kind.REFUSED_ADDRESS, "must use https"),
        ("https://10.0.0.5/hooks", False, http.Kind.REFUSED_ADDRESS, "non-public"),
        ("https://[::1]/hooks", False, http.Kind.REFUSED_ADDRESS, "non-public"),
    ],
)
def test_a_call_never_raises_and_says_what_went_wrong(
    settings: Any, url: str, private_allowed: bool, kind: http.Kind, reason: str
) -> None:
    settings.ALLOW_PRIVATE_PARTNER_URLS = private_allowed

    outcome = http.post(url, body=b"{}", headers={}, timeout=2)

    assert outcome.kind == kind and reason in outcome.reason and outcome.response is None


# --- One retry policy -----------------------------------------------------------------------


def outcome(kind: http.Kind, status: int | None = None) -> http.Outcome:
    response = httpx.Response(status) if status is not None else None
    return http.Outcome(kind, "", 0, response)


@pytest.mark.parametrize(
    ("sent", "retryable"),
    [
        (outcome(http.Kind.TIMEOUT), True),
        (outcome(http.Kind.TRANSPORT_ERROR), True),
        (outcome(http.Kind.HTTP_ERROR, 500), True),
        (outcome(http.Kind.HTTP_ERROR, 429), True),
        (outcome(http.Kind.HTTP_ERROR, 302), True),
        (outcome(http.Kind.DELIVERED, 200), True),  # when the caller cannot use the body
        (outcome(http.Kind.HTTP_ERROR, 410), False),
        (outcome(http.Kind.INVALID_URL), False),
        (outcome(http.Kind.REFUSED_ADDRESS), False),
    ],
)
def test_one_rule_says_what_is_worth_another_attempt(sent: http.Outcome, retryable: bool) -> None:
    assert http.WEBHOOK_RETRIES.retryable(sent) is retryable
    assert http.POST_RETRIES.retryable(sent) is retryable


def test_webhooks_retry_for_about_three_days_and_posts_back_off_from_ten_seconds() -> None:
    total = sum(http.WEBHOOK_RETRIES.schedule, timedelta())
    assert timedelta(days=2, hours=12) <= total <= timedelta(days=3, hours=12)
    assert [http.POST_RETRIES.delay_after(n).total_seconds() for n in (1, 2, 3, 4)] == [
        10,
        20,
        40,
        80,
    ]
    # Past the schedule the last step repeats.
    assert http.WEBHOOK_RETRIES.delay_after(50) == timedelta(hours=24)
