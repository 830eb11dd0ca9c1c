"""The partner lender simulator, driven over real loopback HTTP (no database needed)."""

from __future__ import annotations

import base64
import io
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from standardwebhooks.webhooks import Webhook

from demo.config import load_config
from demo.lenders import SimulatedLender, SimulatorConfigError
from demo.server import STAT_KEYS, PartnerSimulator
from demo.transport import sign_headers

SECRET = "whsec_" + base64.b64encode(b"simulator-test-secret-0123456789").decode()
OTHER_SECRET = "whsec_" + base64.b64encode(b"some-other-secret-abcdefghijklmn").decode()
API_KEY = "pk_test_simulator_key"


def make_lender(slug: str = "acme", **knobs: Any) -> SimulatedLender:
    return SimulatedLender(slug=slug, secret=SECRET, **knobs)


def post_payload(lead_id: str | None = None, amount: str = "5000.00") -> dict[str, Any]:
    return {
        "type": "lead.post",
        "lead_id": lead_id or str(uuid.uuid4()),
        "mode": "live",
        "loan": {"amount": amount, "currency": "CNY", "term_months": 12, "purpose": "consumption"},
        "risk_tier": "R4",
        "region": "CN-GD",
        "applicant": {
            "full_name": "Li Wei",
            "phone": "+8613800000000",
            "national_id": "440101199001310000",
            "birth_date": "1990-01-31",
            "monthly_income": "8000.00",
            "employer": "Example Co",
            "address": "1 Example Road, Guangzhou",
        },
        "consent": {"receipt_id": "rcpt_1", "text_version": "v3", "text_sha256": "0" * 64},
    }


def ping_payload(**extra: Any) -> dict[str, Any]:
    return {
        "type": "lead.ping",
        "ping_id": str(uuid.uuid4()),
        "risk_tier": "R4",
        "amount": "5000.00",
        "currency": "CNY",
        "term_months": 12,
        "region": "CN-GD",
        "age_band": "25-34",
        "income_band": "5000-9999",
        "purpose": "consumption",
        **extra,
    }


def send(
    client: httpx.Client, url: str, payload: object, secret: str = SECRET, **kwargs: Any
) -> httpx.Response:
    body = json.dumps(payload).encode()
    headers = {"content-type": "application/json", **sign_headers(secret, body)}
    return client.post(url, content=body, headers=headers, **kwargs)


class FakePlatformApi:
    """A stdlib HTTP server standing in for the platform API; records what it receives.

    ``statuses`` are answered in order (then 201), e.g. [500, 500] fails twice.
    """

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.statuses: list[int] = []
        self.lock = threading.Lock()
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with api.lock:
                    api.requests.append(
                        {
                            "path": self.path,
                            "headers": {k.lower(): v for k, v in self.headers.items()},
                            "body": json.loads(body),
                        }
                    )
                    status = api.statuses.pop(0) if api.statuses else 201
                reply = b'{"ok": true}'
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    def received(self) -> list[dict[str, Any]]:
        with self.lock:
            return list(self.requests)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def api() -> Iterator[FakePlatformApi]:
    fake = FakePlatformApi()
    yield fake
    fake.close()


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=5.0) as http:
        yield http


SimFactory = Callable[..., PartnerSimulator]


@pytest.fixture
def simulate() -> Iterator[SimFactory]:
    started: list[PartnerSimulator] = []

    def factory(*lenders: SimulatedLender, **kwargs: Any) -> PartnerSimulator:
        kwargs.setdefault("postback_backoff", 0.01)
        sim = PartnerSimulator(lenders or (make_lender(),), **kwargs).start()
        started.append(sim)
        return sim

    yield factory
    for sim in started:
        sim.stop()


# ----------------------------------------------------------------------------- signing


def test_sign_headers_verify_with_standardwebhooks() -> None:
    body = b'{"type": "lead.ping"}'
    headers = sign_headers(SECRET, body, msg_id="msg_1")
    assert headers["webhook-id"] == "msg_1"
    assert headers["webhook-signature"].startswith("v1,")
    assert Webhook(SECRET).verify(body, headers) == {"type": "lead.ping"}


# ----------------------------------------------------------------------------- posts


def test_accept_rate_one_always_accepts(simulate: SimFactory, client: httpx.Client) -> None:
    sim = simulate(make_lender(accept_rate=1.0))
    for _ in range(10):
        reply = send(client, sim.url_for("acme", "post"), post_payload())
        assert reply.status_code == 200
        body = reply.json()
        assert body["decision"] == "accept"
        assert body["reference"].startswith("ACME-")
    stats = sim.stats()["acme"]
    assert (stats["posts"], stats["accepted"], stats["rejected"]) == (10, 10, 0)
    assert len(sim.received("acme")["posts"]) == 10


def test_accept_rate_zero_always_rejects(simulate: SimFactory, client: httpx.Client) -> None:
    sim = simulate(make_lender(accept_rate=0.0))
    for _ in range(10):
        body = send(client, sim.url_for("acme", "post"), post_payload()).json()
        assert body["decision"] == "reject"
        assert body["reason"]
    assert sim.stats()["acme"]["rejected"] == 10


def test_decisions_are_reproducible_for_a_seed(simulate: SimFactory, client: httpx.Client) -> None:
    lead_ids = [f"00000000-0000-0000-0000-{i:012d}" for i in range(30)]

    def run(seed: int) -> list[tuple[str, ...]]:
        sim = simulate(make_lender(accept_rate=0.5, ping_reject_rate=0.3), seed=seed)
        answers: list[tuple[str, ...]] = []
        for lead_id in lead_ids:
            post = send(client, sim.url_for("acme", "post"), post_payload(lead_id))
            ping = send(client, sim.url_for("acme", "ping"), ping_payload())
            answers += [tuple(post.json().values()), tuple(ping.json().values())]
        return answers

    first, again, other = run(7), run(7), run(8)
    assert first == again
    assert first != other
    decisions = {answer[0] for answer in first}
    assert decisions == {"accept", "reject", "bid"}


def test_duplicate_post_replays_first_decision(
    simulate: SimFactory, client: httpx.Client, api: FakePlatformApi
) -> None:
    sim = simulate(make_lender(api_key=API_KEY, accept_rate=0.5), api_base_url=api.url)
    payload = post_payload()
    first = send(client, sim.url_for("acme", "post"), payload).json()
    for _ in range(3):
        assert send(client, sim.url_for("acme", "post"), payload).json() == first
    assert sim.decision("acme", payload["lead_id"]) == first
    assert sim.wait_idle(5)
    stats = sim.stats()["acme"]
    assert stats["posts"] == 4
    assert stats["duplicates"] == 3
    assert stats["accepted"] + stats["rejected"] == 1
    event_ids = [r["body"]["event_id"] for r in api.received()]
    assert len(event_ids) == len(set(event_ids))


# ----------------------------------------------------------------------------- request checks


def test_bad_signatures_get_401_and_are_counted(simulate: SimFactory, client: httpx.Client) -> None:
    sim = simulate()
    url = sim.url_for("acme", "post")
    body = json.dumps(post_payload()).encode()
    wrong_secret = send(client, url, post_payload(), secret=OTHER_SECRET)
    unsigned = client.post(url, content=body, headers={"content-type": "application/json"})
    tampered = client.post(url, content=body + b" ", headers=sign_headers(SECRET, body))
    stale = client.post(
        url, content=body, headers=sign_headers(SECRET, body, timestamp=int(time.time()) - 3600)
    )
    garbled = client.post(
        url, content=body, headers={**sign_headers(SECRET, body), "webhook-signature": "nonsense"}
    )
    for reply in (wrong_secret, unsigned, tampered, stale, garbled):
        assert reply.status_code == 401
    stats = sim.stats()["acme"]
    assert stats["bad_signatures"] == 5
    assert stats["posts"] == 0
    assert sim.received("acme")["posts"] == []


def test_unknown_slug_or_kind_is_404(simulate: SimFactory, client: httpx.Client) -> None:
    sim = simulate()
    assert send(client, f"{sim.base_url}/nobody/post", post_payload()).status_code == 404
    assert send(client, f"{sim.base_url}/acme/other", post_payload()).status_code == 404
    assert client.get(f"{sim.base_url}/_health").json() == {"status": "ok"}


def test_malformed_json_is_400(simulate: SimFactory, client: httpx.Client) -> None:
    sim = simulate()
    body = b'{"type": "lead.post", '
    reply = client.post(
        sim.url_for("acme", "post"), content=body, headers=sign_headers(SECRET, body)
    )
    assert reply.status_code == 400
    assert send(client, sim.url_for("acme", "post"), ["not", "an", "object"]).status_code == 400
    assert send(client, sim.url_for("acme", "post"), {"type": "lead.post"}).status_code == 400
    assert sim.stats()["acme"]["bad_requests"] == 3


# ----------------------------------------------------------------------------- pings


def test_ping_bids_within_range(simulate: SimFactory, client: httpx.Client) -> None:
    sim = simulate(make_lender(bid_min=Decimal("20.00"), bid_max="40.00"))
    for _ in range(10):
        body = send(client, sim.url_for("acme", "ping"), ping_payload()).json()
        assert body["decision"] == "bid"
        assert Decimal("20.00") <= Decimal(body["bid"]) <= Decimal("40.00")
        assert Decimal(body["bid"]).as_tuple().exponent == -2
    stats = sim.stats()["acme"]
    assert (stats["pings"], stats["bids"], stats["pii_in_ping"]) == (10, 10, 0)


def test_bids_state_the_pings_currency_or_the_lenders_own(
    simulate: SimFactory, client: httpx.Client
) -> None:
    sim = simulate(make_lender(), make_lender(slug="dollar", currency="USD"))

    hkd = send(client, sim.url_for("acme", "ping"), ping_payload(currency="HKD")).json()
    usd = send(client, sim.url_for("dollar", "ping"), ping_payload()).json()

    assert (hkd["decision"], hkd["currency"]) == ("bid", "HKD")
    assert (usd["decision"], usd["currency"]) == ("bid", "USD")


def test_ping_reject_rate_one_always_rejects(simulate: SimFactory, client: httpx.Client) -> None:
    sim = simulate(make_lender(ping_reject_rate=1.0))
    body = send(client, sim.url_for("acme", "ping"), ping_payload()).json()
    assert body["decision"] == "reject"
    assert body["reason"]


def test_ping_with_personal_data_is_flagged(simulate: SimFactory, client: httpx.Client) -> None:
    sim = simulate()
    url = sim.url_for("acme", "ping")
    send(client, url, ping_payload())
    leaky = ping_payload(phone="+8613800000000", extra={"national_id": "44010119900131"})
    assert send(client, url, leaky).status_code == 200
    stats = sim.stats()["acme"]
    assert (stats["pings"], stats["pii_in_ping"]) == (2, 1)
    [violation] = sim.received("acme")["violations"]
    assert violation == {"ping_id": leaky["ping_id"], "keys": ["phone", "extra.national_id"]}


# ----------------------------------------------------------------------------- fault injection


def test_error_rate_one_gives_500(simulate: SimFactory, client: httpx.Client) -> None:
    sim = simulate(make_lender(error_rate=1.0))
    assert send(client, sim.url_for("acme", "post"), post_payload()).status_code == 500
    assert send(client, sim.url_for("acme", "ping"), ping_payload()).status_code == 500
    stats = sim.stats()["acme"]
    assert stats["errors_injected"] == stats["http500_injected"] == 2
    assert stats["accepted"] == 0


def test_garbage_rate_one_gives_non_json(simulate: SimFactory, client: httpx.Client) -> None:
    sim = simulate(make_lender(garbage_rate=1.0))
    reply = send(client, sim.url_for("acme", "post"), post_payload())
    assert reply.status_code == 200
    assert reply.headers["content-type"].startswith("text/html")
    with pytest.raises(json.JSONDecodeError):
        reply.json()
    assert sim.stats()["acme"]["garbage_injected"] == 1


def test_timeout_hangs_then_answers(simulate: SimFactory, client: httpx.Client) -> None:
    sim = simulate(make_lender(timeout_rate=1.0, hang_seconds=0.4))
    with pytest.raises(httpx.ReadTimeout):
        send(client, sim.url_for("acme", "ping"), ping_payload(), timeout=0.1)
    started = time.monotonic()
    reply = send(client, sim.url_for("acme", "ping"), ping_payload())
    assert time.monotonic() - started >= 0.35
    assert reply.json()["decision"] == "bid"
    assert sim.stats()["acme"]["timeouts_injected"] == 2


def test_stop_unblocks_hanging_handlers(client: httpx.Client) -> None:
    sim = PartnerSimulator([make_lender(timeout_rate=1.0, hang_seconds=30)]).start()
    errors: list[BaseException] = []

    def call() -> None:
        try:
            send(client, sim.url_for("acme", "post"), post_payload())
        except httpx.HTTPError as exc:
            errors.append(exc)

    caller = threading.Thread(target=call)
    caller.start()
    time.sleep(0.2)
    started = time.monotonic()
    sim.stop()
    caller.join(3)
    assert time.monotonic() - started < 2
    assert not caller.is_alive()
    assert errors  # the connection was dropped, not answered


def test_latency_delays_answers(simulate: SimFactory, client: httpx.Client) -> None:
    sim = simulate(make_lender(latency_ms=150))
    started = time.monotonic()
    send(client, sim.url_for("acme", "ping"), ping_payload())
    assert time.monotonic() - started >= 0.14


# ----------------------------------------------------------------------------- webhooks


def test_consent_withdrawal_recorded_and_acknowledged(
    simulate: SimFactory, client: httpx.Client, api: FakePlatformApi
) -> None:
    sim = simulate(make_lender(api_key=API_KEY), api_base_url=api.url)
    webhook = {
        "type": "consent.withdrawn",
        "data": {"withdrawal_id": "wd_123", "lead_ids": ["lead-a", "lead-b"]},
    }
    reply = send(client, sim.url_for("acme", "webhooks"), webhook)
    assert reply.status_code == 204
    invoice = {"type": "invoice.issued", "data": {"invoice_id": "inv_1"}}
    assert send(client, sim.url_for("acme", "webhooks"), invoice).status_code == 204
    assert sim.wait_idle(5)
    assert sim.deletion_requested("acme") == {"lead-a", "lead-b"}
    assert [w["type"] for w in sim.received("acme")["webhooks"]] == [
        "consent.withdrawn",
        "invoice.issued",
    ]
    [ack] = api.received()
    assert ack["path"] == "/api/v1/partner/consent-withdrawals/wd_123/ack"
    assert ack["headers"]["authorization"] == f"Bearer {API_KEY}"
    assert ack["headers"]["idempotency-key"] == "acme-ack-wd_123"
    assert ack["body"]["lead_ids"] == ["lead-a", "lead-b"]
    assert ack["body"]["withdrawal_id"] == "wd_123"
    stats = sim.stats()["acme"]
    assert (stats["webhooks"], stats["withdrawals"], stats["acks_sent"]) == (2, 1, 1)


def test_failed_ack_is_counted(simulate: SimFactory, client: httpx.Client) -> None:
    sim = simulate(
        make_lender(api_key=API_KEY), api_base_url="http://127.0.0.1:9", postback_retries=1
    )
    webhook = {"type": "consent.withdrawn", "data": {"withdrawal_id": "w1", "lead_ids": []}}
    assert send(client, sim.url_for("acme", "webhooks"), webhook).status_code == 204
    assert sim.wait_idle(5)
    assert sim.stats()["acme"]["acks_failed"] == 1


# ----------------------------------------------------------------------------- postbacks


def test_outcome_postbacks_accepted_approved_funded(
    simulate: SimFactory, client: httpx.Client, api: FakePlatformApi
) -> None:
    lender = make_lender(
        api_key=API_KEY, apr_min=Decimal("0.1500"), apr_max=Decimal("0.2500"), outcome_delay_ms=0
    )
    sim = simulate(lender, api_base_url=api.url)
    lead_ids = [str(uuid.uuid4()) for _ in range(5)]
    for lead_id in lead_ids:
        assert send(client, sim.url_for("acme", "post"), post_payload(lead_id)).status_code == 200
    assert sim.wait_idle(5)
    requests = api.received()
    assert len(requests) == 15
    for lead_id in lead_ids:
        mine = [r for r in requests if r["path"] == f"/api/v1/partner/leads/{lead_id}/events"]
        assert [r["body"]["type"] for r in mine] == ["accepted", "approved", "funded"]
        for request in mine:
            body = request["body"]
            assert request["headers"]["authorization"] == f"Bearer {API_KEY}"
            assert request["headers"]["idempotency-key"] == body["event_id"]
            assert body["event_id"] == f"acme-{lead_id}-{body['type']}"
            assert datetime.fromisoformat(body["occurred_at"]).utcoffset() is not None
        times = [datetime.fromisoformat(r["body"]["occurred_at"]) for r in mine]
        assert times == sorted(times)
        approved, funded = mine[1]["body"], mine[2]["body"]
        assert Decimal("0") < Decimal(approved["amount"]) <= Decimal("5000.00")
        assert Decimal("0.1500") <= Decimal(approved["apr"]) <= Decimal("0.2500")
        assert len(approved["apr"].split(".")[1]) == 4
        assert Decimal(funded["principal"]) <= Decimal(approved["amount"])
        # Amounts state their currency (the loan's); events without one carry none.
        assert (approved["currency"], funded["currency"]) == ("CNY", "CNY")
        assert "currency" not in mine[0]["body"]
    stats = sim.stats()["acme"]
    assert (stats["events_sent"], stats["events_failed"]) == (15, 0)


def test_underwriting_rejection_reports_rejected(
    simulate: SimFactory, client: httpx.Client, api: FakePlatformApi
) -> None:
    sim = simulate(make_lender(api_key=API_KEY, approval_rate=0.0), api_base_url=api.url)
    send(client, sim.url_for("acme", "post"), post_payload())
    assert sim.wait_idle(5)
    bodies = [r["body"] for r in api.received()]
    assert [b["type"] for b in bodies] == ["accepted", "rejected"]
    assert bodies[1]["reason"]


def test_no_events_for_rejected_posts_or_without_api_key(
    simulate: SimFactory, client: httpx.Client, api: FakePlatformApi
) -> None:
    sim = simulate(
        make_lender("picky", api_key=API_KEY, accept_rate=0.0),
        make_lender("keyless", api_key=None),
        api_base_url=api.url,
    )
    assert send(client, sim.url_for("picky", "post"), post_payload()).json()["decision"] == "reject"
    assert (
        send(client, sim.url_for("keyless", "post"), post_payload()).json()["decision"] == "accept"
    )
    assert sim.wait_idle(5)
    time.sleep(0.1)
    assert api.received() == []


def test_postback_retried_after_server_errors(
    simulate: SimFactory, client: httpx.Client, api: FakePlatformApi
) -> None:
    api.statuses = [500, 503]
    sim = simulate(make_lender(api_key=API_KEY), api_base_url=api.url)
    send(client, sim.url_for("acme", "post"), post_payload())
    assert sim.wait_idle(5)
    bodies = [r["body"] for r in api.received()]
    assert [b["type"] for b in bodies] == ["accepted"] * 3 + ["approved", "funded"]
    assert bodies[0] == bodies[1] == bodies[2]  # same body (and key) on every retry
    stats = sim.stats()["acme"]
    assert (stats["events_sent"], stats["events_failed"]) == (3, 0)


def test_postback_gives_up_after_retries(
    simulate: SimFactory, client: httpx.Client, api: FakePlatformApi
) -> None:
    api.statuses = [500] * 100
    sim = simulate(make_lender(api_key=API_KEY), api_base_url=api.url, postback_retries=5)
    send(client, sim.url_for("acme", "post"), post_payload())
    assert sim.wait_idle(5)
    assert len(api.received()) == 6  # first attempt + 5 retries, later events not attempted
    stats = sim.stats()["acme"]
    assert (stats["events_sent"], stats["events_failed"]) == (0, 3)


# ----------------------------------------------------------------------------- config


def test_stats_has_every_counter(simulate: SimFactory) -> None:
    sim = simulate(make_lender("a"), make_lender("b"))
    stats = sim.stats()
    assert set(stats) == {"a", "b"}
    assert tuple(stats["a"]) == STAT_KEYS
    assert {
        "pings",
        "bids",
        "posts",
        "accepted",
        "rejected",
        "errors_injected",
        "bad_signatures",
        "pii_in_ping",
        "webhooks",
        "withdrawals",
        "events_sent",
        "events_failed",
        "acks_sent",
        "acks_failed",
    } <= set(STAT_KEYS)


@pytest.mark.parametrize(
    "knobs",
    [
        {"accept_rate": 1.5},
        {"error_rate": 0.6, "timeout_rate": 0.6},
        {"bid_min": "50", "bid_max": "10"},
        {"apr_min": "0.30", "apr_max": "0.20"},
        {"latency_ms": -1},
        {"currency": "usd"},
        {"currency": 840},
    ],
)
def test_invalid_knobs_are_refused(knobs: dict[str, Any]) -> None:
    with pytest.raises(SimulatorConfigError):
        make_lender(**knobs)


def write_config(tmp_path: Path, content: str | dict[str, Any]) -> Path:
    path = tmp_path / "lenders.json"
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return path


BAD_CONFIGS: list[tuple[Any, str]] = [
    (None, "not found"),
    ("{not json", "not valid JSON"),
    ({"lenders": [{"slug": "acme", "secret": SECRET, "colour": "red"}]}, "colour"),
    ({"lenders": [{"slug": "acme", "secret": "plain-secret"}]}, "whsec_"),
    ({"lenders": []}, "lenders"),
]


@pytest.mark.parametrize(("content", "message"), BAD_CONFIGS)
def test_bad_config_is_refused(tmp_path: Path, content: Any, message: str) -> None:
    path = tmp_path / "missing.json" if content is None else write_config(tmp_path, content)
    with pytest.raises(SimulatorConfigError, match=message):
        load_config(path)


@pytest.mark.parametrize(("content", "message"), BAD_CONFIGS[:4])
def test_command_reports_bad_config(tmp_path: Path, content: Any, message: str) -> None:
    from django.core.management import call_command
    from django.core.management.base import CommandError

    from demo.management.commands.simulate_partners import Command

    path = tmp_path / "missing.json" if content is None else write_config(tmp_path, content)
    with pytest.raises(CommandError, match=message):
        call_command(Command(), "--config", str(path))


def test_command_serves_and_prints_stats(tmp_path: Path) -> None:
    from django.core.management import call_command

    from demo.management.commands.simulate_partners import Command

    config = {
        "api_base_url": None,
        "lenders": [{"slug": "acme", "secret": SECRET, "bid_min": "5.00", "accept_rate": 0.5}],
    }
    out = io.StringIO()
    call_command(
        Command(),
        "--config",
        str(write_config(tmp_path, config)),
        "--port",
        "0",
        "--duration",
        "0.2",
        stdout=out,
    )
    text = out.getvalue()
    assert "/acme/post" in text
    assert "/acme/ping" in text
    assert "Stats:" in text
    assert '"bad_signatures": 0' in text
