"""The simulator's fault behaviours for the fault tests (tests/faults): a reset connection,
answers lost after the lender decided, duplicate outcome postbacks, and the lenders' own
log (demo.journal) from which those tests count. Real loopback HTTP, no database."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from demo.journal import read_journal
from demo.lenders import SimulatorConfigError, fault_for
from demo.server import PartnerSimulator
from tests.demo.test_simulator import (
    API_KEY,
    FakePlatformApi,
    make_lender,
    post_payload,
    send,
)


@pytest.fixture
def api() -> Iterator[FakePlatformApi]:
    fake = FakePlatformApi()
    yield fake
    fake.close()


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=5.0) as http:
        yield http


def start(tmp_path: Path, api_url: str | None = None, **knobs: Any) -> PartnerSimulator:
    lender = make_lender(api_key=API_KEY if api_url else None, outcome_delay_ms=0, **knobs)
    return PartnerSimulator(
        [lender],
        api_base_url=api_url,
        log_path=str(tmp_path / "lenders.jsonl"),
        postback_backoff=0.01,
    ).start()


def test_reset_rate_one_resets_the_connection_without_an_answer(
    tmp_path: Path, client: httpx.Client
) -> None:
    sim = start(tmp_path, reset_rate=1.0)
    try:
        with pytest.raises(httpx.TransportError):
            send(client, sim.url_for("acme", "post"), post_payload())
        assert sim.stats()["acme"]["resets_injected"] == 1
        assert sim.stats()["acme"]["accepted"] == 0  # reset before deciding by default
    finally:
        sim.stop()


def test_fault_after_decision_keeps_the_lead_and_reports_its_outcomes(
    tmp_path: Path, client: httpx.Client, api: FakePlatformApi
) -> None:
    sim = start(tmp_path, api.url, garbage_rate=1.0, faults_after_decision=True)
    lead_id = "lead-lost-answer"
    try:
        reply = send(client, sim.url_for("acme", "post"), post_payload(lead_id))
        assert reply.headers["content-type"].startswith("text/html")  # the answer is lost
        assert sim.wait_idle(5)
        decision = sim.decision("acme", lead_id)
        assert decision is not None and decision["decision"] == "accept"
        paths = {r["path"] for r in api.received()}
        assert paths == {f"/api/v1/partner/leads/{lead_id}/events"}
        assert sim.stats()["acme"]["answers_lost"] == 1
    finally:
        sim.stop()
    posts = [r for r in read_journal(tmp_path / "lenders.jsonl") if r["kind"] == "post"]
    assert [(p["lead_id"], p["answer"], p["decision"]) for p in posts] == [
        (lead_id, "garbage", "accept")
    ]


def test_duplicate_postbacks_resend_each_event_under_a_new_idempotency_key(
    tmp_path: Path, client: httpx.Client, api: FakePlatformApi
) -> None:
    sim = start(tmp_path, api.url, duplicate_postbacks=2, approval_rate=0.0)
    try:
        send(client, sim.url_for("acme", "post"), post_payload("lead-dup"))
        assert sim.wait_idle(5)
    finally:
        sim.stop()
    sent = [(r["body"]["event_id"], r["headers"]["idempotency-key"]) for r in api.received()]
    accepted, rejected = "acme-lead-dup-accepted", "acme-lead-dup-rejected"
    assert sent == [
        (accepted, accepted),
        (accepted, f"{accepted}-dup1"),
        (accepted, f"{accepted}-dup2"),
        (rejected, rejected),
        (rejected, f"{rejected}-dup1"),
        (rejected, f"{rejected}-dup2"),
    ]
    bodies = [r["body"] for r in api.received()]
    assert bodies[0] == bodies[1] == bodies[2]  # a duplicate is the same event, same time
    done = [r for r in read_journal(tmp_path / "lenders.jsonl") if r["kind"] == "postback_done"]
    assert [(d["event_id"], d["duplicate"], d["delivered"]) for d in done] == [
        (accepted, False, True),
        (accepted, True, True),
        (accepted, True, True),
        (rejected, False, True),
        (rejected, True, True),
        (rejected, True, True),
    ]


def test_a_refused_duplicate_does_not_stop_the_events_after_it(
    tmp_path: Path, client: httpx.Client, api: FakePlatformApi
) -> None:
    api.statuses = [201, 422]  # the accepted event, then its duplicate refused
    sim = start(tmp_path, api.url, duplicate_postbacks=1, approval_rate=0.0)
    try:
        send(client, sim.url_for("acme", "post"), post_payload("lead-x"))
        assert sim.wait_idle(5)
        stats = sim.stats()["acme"]
    finally:
        sim.stop()
    assert (stats["events_sent"], stats["events_failed"]) == (2, 0)
    assert (stats["duplicates_sent"], stats["duplicates_failed"]) == (1, 1)


def test_postbacks_retry_the_platforms_5xx_and_log_every_attempt(
    tmp_path: Path, client: httpx.Client, api: FakePlatformApi
) -> None:
    api.statuses = [503, 500]
    sim = start(tmp_path, api.url, approval_rate=0.0)
    try:
        send(client, sim.url_for("acme", "post"), post_payload("lead-r"))
        assert sim.wait_idle(5)
    finally:
        sim.stop()
    attempts = [
        (r["event_id"], r["attempt"], r["status"])
        for r in read_journal(tmp_path / "lenders.jsonl")
        if r["kind"] == "postback"
    ]
    assert attempts == [
        ("acme-lead-r-accepted", 0, 503),
        ("acme-lead-r-accepted", 1, 500),
        ("acme-lead-r-accepted", 2, 201),
        ("acme-lead-r-rejected", 0, 201),
    ]


def test_fault_draws_are_consecutive_slices() -> None:
    lender = make_lender(error_rate=0.1, garbage_rate=0.2, timeout_rate=0.3, reset_rate=0.4)
    assert [fault_for(lender, u) for u in (0.05, 0.15, 0.45, 0.65, 0.999)] == [
        "http500",
        "garbage",
        "hang",
        "reset",
        "reset",
    ]
    assert fault_for(make_lender(reset_rate=0.5), 0.5) is None


def test_fault_rates_including_resets_cannot_exceed_one() -> None:
    with pytest.raises(SimulatorConfigError, match="reset_rate"):
        make_lender(error_rate=0.5, reset_rate=0.6)
    with pytest.raises(SimulatorConfigError, match="duplicate_postbacks"):
        make_lender(duplicate_postbacks=-1)
