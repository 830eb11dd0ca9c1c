"""Intake throughput: POST /api/v1/referrals under gunicorn on PostgreSQL, against a bare
DRF endpoint that INSERTs the same payload once, same server, same database, same run.

The intake does everything a real one does: API key check, validation, idempotency record,
vault encryption and blind index, consent grant and ledger append, matching, leads, and the
referral's one outbox message published to a real Redis broker (no worker consumes it:
delivery is not part of intake's latency budget). ``intake_vs_bare_insert`` = intake req/s
/ bare req/s, measured at concurrency 1, 4 and 16 (goal >= 0.5 at each; the value is the
lowest of the three). The database round trips of one intake (after-commit publishing
included) are counted in this process first and printed.

There is no lock hold time to print any more: intake takes no platform-wide lock (the
consent ledger's entries are appended unsequenced and numbered later by the sequencer,
whose rate ``bench_ledger``'s ``ledger_lock_cap`` measures).
"""

from __future__ import annotations

import os
import random
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from django.db import connection

ROOT = Path(__file__).resolve().parent.parent
PORT = 8931
BROKER = "redis://127.0.0.1:6379/15"
CONCURRENCIES = (1, 4, 16)
DURATION = 8.0
ROUNDS = 2


def listed(partner: Any) -> None:
    from datetime import date

    from partners.registry import PartnerLicence

    PartnerLicence.objects.get_or_create(
        partner=partner,
        defaults={
            "number": f"BENCH-{partner.slug}",
            "issuer": "Bench",
            "valid_from": date(2020, 1, 1),
            "expires_on": date(2099, 12, 31),
        },
    )


def _setup() -> str:
    from bench.urls import BARE_TABLE
    from partners.keys import issue_api_key
    from partners.models import Partner, PartnerStatus, Product, TrafficSource
    from partners.webhook_signing import create_endpoint
    from tests.factories import published_consent_text

    with connection.cursor() as cursor:
        cursor.execute(
            f"CREATE TABLE IF NOT EXISTS {BARE_TABLE} "
            "(id bigserial PRIMARY KEY, body jsonb NOT NULL, created_at timestamptz DEFAULT now())"
        )
    published_consent_text()
    for i in range(10):
        partner, _ = Partner.objects.get_or_create(
            slug=f"bench-partner-{i}",
            defaults={
                "name": f"Bench partner {i}",
                "legal_name": "Bench",
                "status": PartnerStatus.LIVE,
            },
        )
        listed(partner)  # routing never reaches a partner without a licence
        if not partner.products.exists():
            Product.objects.create(
                partner=partner,
                name="bench",
                min_amount=1000,
                max_amount=50000,
                min_term_months=3,
                max_term_months=24,
                risk_tiers=["R3", "R4", "R5", "R6"],
                apr_min="0.15",
                apr_max="0.22",
                post_url="http://127.0.0.1:9/post",
                dedupe_days=0,
            )
            create_endpoint(partner=partner, url="http://127.0.0.1:9/webhooks")
    source, _ = TrafficSource.objects.get_or_create(name="Bench operator")
    return issue_api_key(source=source).plaintext


def _round_trips(key: str) -> int:
    """Database round trips of one intake with an Idempotency-Key, served in this process
    with the broker gunicorn uses (BEGIN and COMMIT are not counted)."""
    from django.test.utils import CaptureQueriesContext
    from rest_framework.test import APIClient

    from marketplace.celery import app

    os.environ["CELERY_BROKER_URL"] = BROKER  # Celery prefers it to its configuration
    app.conf.update(task_always_eager=False, broker_url=BROKER)
    client = APIClient(SERVER_NAME="127.0.0.1")
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    body = _bodies(1, seed=int(time.time() * 1000))[0]
    with CaptureQueriesContext(connection) as queries:
        response = client.post(
            "/api/v1/referrals",
            body,
            format="json",
            headers={"Idempotency-Key": body["source_reference"]},
        )
    assert response.status_code == 201, response.content
    return len(queries.captured_queries)


def _bodies(n: int, seed: int) -> list[dict[str, Any]]:
    from tests.factories import referral_payload

    rng = random.Random(seed)
    bodies = []
    for i in range(n):
        body = referral_payload(national_id=f"B{seed}{i:09d}{rng.randint(0, 999):03d}")
        body["source_reference"] = f"bench-{seed}-{i}"
        bodies.append(body)
    return bodies


def _load(
    url: str,
    bodies: list[dict[str, Any]],
    headers: Callable[[int], dict[str, str]],
    concurrency: int,
) -> tuple[float, list[float], int]:
    """Closed-loop load for DURATION seconds: (req/s, latencies in ms, errors)."""
    latencies: list[float] = []
    errors = 0
    lock = threading.Lock()
    counter = iter(range(len(bodies)))
    stop_at = time.monotonic() + DURATION

    def worker() -> None:
        nonlocal errors
        with httpx.Client(timeout=30) as client:
            while time.monotonic() < stop_at:
                with lock:
                    index = next(counter, None)
                if index is None:
                    return
                started = time.perf_counter()
                response = client.post(url, json=bodies[index], headers=headers(index))
                elapsed = (time.perf_counter() - started) * 1000
                with lock:
                    if response.status_code == 201:
                        latencies.append(elapsed)
                    else:
                        errors += 1

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    began = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return len(latencies) / (time.monotonic() - began), latencies, errors


def _p(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[int(q) - 1] if len(values) > 1 else 0.0


def run() -> dict[str, dict[str, Any]]:
    key = _setup()
    _round_trips(key)  # warm-up: the product index, the vault key check
    round_trips = _round_trips(key)
    print(f"database round trips per referral: {round_trips}")
    env = {
        **os.environ,
        "ROOT_URLCONF": "bench.urls",
        "CELERY_BROKER_URL": BROKER,
        "DEBUG": "false",
        "ALLOWED_HOSTS": "127.0.0.1",
        "LOG_LEVEL": "WARNING",
    }
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "marketplace.wsgi",
            "-b",
            f"127.0.0.1:{PORT}",
            "-w",
            "4",
            "--log-level",
            "warning",
        ],
        cwd=ROOT,
        env=env,
    )
    base = f"http://127.0.0.1:{PORT}"
    try:
        for _ in range(100):
            try:
                httpx.post(f"{base}/bench/bare-insert", json={}, timeout=2)
                break
            except httpx.HTTPError:
                time.sleep(0.2)
        by_concurrency: dict[int, dict[str, Any]] = {}
        errors = 0
        for concurrency in CONCURRENCIES:
            bare_rates, intake_rates, intake_lat, bare_lat = [], [], [], []
            for round_no in range(ROUNDS):
                seed = int(time.time()) * 100 + concurrency * 10 + round_no
                bodies = _bodies(4000, seed=seed)
                rate, lat, err = _load(
                    f"{base}/bench/bare-insert", bodies, lambda i: {}, concurrency
                )
                bare_rates.append(rate)
                bare_lat += lat
                errors += err
                rate, lat, err = _load(
                    f"{base}/api/v1/referrals",
                    bodies,
                    lambda i, bodies=bodies: {
                        "Authorization": f"Bearer {key}",
                        "Idempotency-Key": bodies[i]["source_reference"],
                    },
                    concurrency,
                )
                intake_rates.append(rate)
                intake_lat += lat
                errors += err
            bare, intake = statistics.median(bare_rates), statistics.median(intake_rates)
            print(
                f"concurrency {concurrency}: bare insert {bare:.0f} req/s (p50 "
                f"{_p(bare_lat, 50):.1f} ms, p99 {_p(bare_lat, 99):.1f} ms); intake "
                f"{intake:.0f} req/s (p50 {_p(intake_lat, 50):.1f} ms, p99 "
                f"{_p(intake_lat, 99):.1f} ms); ratio {intake / bare:.3f}",
                flush=True,
            )
            by_concurrency[concurrency] = {
                "ratio": round(intake / bare, 3),
                "bare_req_s": round(bare),
                "intake_req_s": round(intake),
                "intake_p99_ms": round(_p(intake_lat, 99), 1),
                "bare_p99_ms": round(_p(bare_lat, 99), 1),
            }
    finally:
        server.terminate()
        server.wait(timeout=20)
        import redis

        redis.Redis.from_url(BROKER).flushdb()
    lowest = min(by_concurrency.values(), key=lambda figures: figures["ratio"])
    print(f"errors {errors}; no platform-wide lock on intake (see ledger_lock_cap)")
    return {
        "intake_vs_bare_insert": {
            "value": lowest["ratio"],
            "baseline": "bare DRF one-INSERT endpoint, same gunicorn (-w 4) and database, "
            "concurrency 1, 4 and 16; the value is the lowest ratio: "
            + "; ".join(
                f"c{c}: {f['intake_req_s']} vs {f['bare_req_s']} req/s"
                for c, f in by_concurrency.items()
            ),
            "goal": ">= 0.5",
            "by_concurrency": {str(c): f for c, f in by_concurrency.items()},
            "errors": errors,
            "round_trips_per_referral": round_trips,
        }
    }
