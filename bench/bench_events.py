"""Partner events: POST /api/v1/partner/leads/{id}/events under gunicorn on PostgreSQL,
against the bare DRF endpoint that INSERTs the same body once (``bench.urls``), same
server, same database, same run. ``events_vs_bare_insert`` = events req/s / bare req/s
(goal >= 0.5).

Each request reports the ``accepted`` event of its own delivered lead of a partner on a
CPL schedule, so every request stores one event and books one charge (the real path:
``billing.outcomes.report_outcome``). Where the time goes is measured in-process on the
same requests: database round trips (queries, savepoints among them) and CPU per request
(``time.process_time`` of the Django test client, the server's work without the network).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
from django.db import connection, transaction

from bench.bench_catchup import _clone_sql, _template

ROOT = Path(__file__).resolve().parent.parent
PORT = 8933
BROKER = "redis://127.0.0.1:6379/14"
CONCURRENCY = 8
DURATION = 8.0
ROUNDS = 2
LEADS = 4000  # per round: more than a round can report
SLUG = "bench-events"


def _partner() -> tuple[Any, str]:
    from billing.fees import create_fee_schedule
    from billing.models import FeeSchedule
    from billing.pricing import FeeTerms
    from partners.keys import issue_api_key
    from partners.models import Product
    from tests.factories import PartnerFactory, ProductFactory

    product = Product.objects.filter(partner__slug=SLUG).first()
    if product is None:
        product = ProductFactory(partner=PartnerFactory(name="Bench events", slug=SLUG))
    if not FeeSchedule.objects.filter(partner_id=product.partner_id).exists():
        create_fee_schedule(
            partner=product.partner,
            effective_from=datetime(2020, 1, 1, tzinfo=UTC),
            terms=FeeTerms(cpl=Decimal("40.00")),
        )
    return product, issue_api_key(partner=product.partner).plaintext


def _leads(product: Any, n: int) -> list[uuid.UUID]:
    """``n`` new delivered leads of the bench partner (copies of a template lead)."""
    from bench.urls import BARE_TABLE

    with connection.cursor() as cursor:
        cursor.execute(
            f"CREATE TABLE IF NOT EXISTS {BARE_TABLE} "
            "(id bigserial PRIMARY KEY, body jsonb NOT NULL, created_at timestamptz DEFAULT now())"
        )
    template = _template()
    lead_ids = [uuid.uuid4() for _ in range(n)]
    referral_ids = [uuid.uuid4() for _ in range(n)]
    referral_sql = _clone_sql(
        "marketplace_referral",
        {"id": "g.id", "source_reference": "'bench-ev-' || g.id::text"},
        "unnest(%s::uuid[]) AS g(id)",
    )
    lead_sql = _clone_sql(
        "marketplace_lead",
        {"id": "g.id", "referral_id": "g.ref", "partner_id": "%s", "product_id": "%s"},
        "unnest(%s::uuid[], %s::uuid[]) AS g(id, ref)",
    )
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(referral_sql, [referral_ids, template.referral_id])
        cursor.execute(
            lead_sql,
            [product.partner_id, product.id, lead_ids, referral_ids, template.pk],
        )
        # Thousands of one partner's leads in one statement, a second before the load: with
        # the statistics of before, the planner takes the lead's lookup by (partner, id) for a
        # scan of the partner's index (a filter over every lead of the partner, growing with
        # each run). Leads that arrive one by one are analysed as they come.
        cursor.execute("ANALYZE marketplace_lead")
    return lead_ids


def _body(n: int) -> dict[str, Any]:
    at = datetime.now(UTC) - timedelta(minutes=5)
    return {"event_id": f"bench-{uuid.uuid4().hex}-{n}", "type": "accepted", "occurred_at": at}


def _load(
    urls: list[str], bodies: list[dict[str, Any]], headers: dict[str, str]
) -> tuple[float, list[float], int]:
    """Closed-loop load for DURATION seconds: (req/s, latencies in ms, errors)."""
    latencies: list[float] = []
    errors = 0
    lock = threading.Lock()
    counter = iter(range(len(urls)))
    stop_at = time.monotonic() + DURATION

    def worker() -> None:
        nonlocal errors
        with httpx.Client(timeout=30) as client:
            while time.monotonic() < stop_at:
                with lock:
                    index = next(counter, None)
                if index is None:
                    return
                body = {**bodies[index], "occurred_at": bodies[index]["occurred_at"].isoformat()}
                started = time.perf_counter()
                response = client.post(urls[index], json=body, headers=headers)
                elapsed = (time.perf_counter() - started) * 1000
                with lock:
                    if response.status_code == 201:
                        latencies.append(elapsed)
                    else:
                        errors += 1

    threads = [threading.Thread(target=worker) for _ in range(CONCURRENCY)]
    began = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return len(latencies) / (time.monotonic() - began), latencies, errors


def _profile(product: Any, key: str, n: int = 50) -> dict[str, float]:
    """Round trips and CPU of one event POST, in this process (no network)."""
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    client = Client(HTTP_AUTHORIZATION=f"Bearer {key}")
    queries, savepoints, cpu = [], [], []
    for lead_id in _leads(product, n):
        body = _body(0)
        body["occurred_at"] = body["occurred_at"].isoformat()
        with CaptureQueriesContext(connection) as captured:
            started = time.process_time()
            response = client.post(
                f"/api/v1/partner/leads/{lead_id}/events", body, content_type="application/json"
            )
            cpu.append((time.process_time() - started) * 1000)
        assert response.status_code == 201, response.content
        sqls = [q["sql"] for q in captured.captured_queries]
        queries.append(len(sqls))
        savepoints.append(sum(s.startswith("SAVEPOINT") for s in sqls))
    return {
        "round_trips": statistics.median(queries),
        "savepoints": statistics.median(savepoints),
        "cpu_ms": statistics.median(cpu),
    }


def run() -> dict[str, dict[str, Any]]:
    product, key = _partner()
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
        ],
        cwd=ROOT,
        env=env,
    )
    base = f"http://127.0.0.1:{PORT}"
    headers = {"Authorization": f"Bearer {key}"}
    try:
        for _ in range(100):
            try:
                httpx.post(f"{base}/bench/bare-insert", json={}, timeout=2)
                break
            except httpx.HTTPError:
                time.sleep(0.2)
        bare_rates, event_rates, event_lat, bare_lat, errors = [], [], [], [], 0
        for _ in range(ROUNDS):
            lead_ids = _leads(product, LEADS)
            bodies = [_body(n) for n in range(LEADS)]
            rate, lat, err = _load([f"{base}/bench/bare-insert"] * LEADS, bodies, {})
            bare_rates.append(rate)
            bare_lat += lat
            errors += err
            urls = [f"{base}/api/v1/partner/leads/{pk}/events" for pk in lead_ids]
            rate, lat, err = _load(urls, bodies, headers)
            event_rates.append(rate)
            event_lat += lat
            errors += err
    finally:
        server.terminate()
        server.wait(timeout=20)
        import redis

        redis.Redis.from_url(BROKER).flushdb()
    where = _profile(product, key)
    bare, events = statistics.median(bare_rates), statistics.median(event_rates)
    p99: Callable[[list[float]], float] = lambda v: (  # noqa: E731
        statistics.quantiles(v, n=100)[98] if len(v) > 1 else 0.0
    )
    print(
        f"bare insert: {bare:.0f} req/s (p99 {p99(bare_lat):.1f} ms); events: {events:.0f} "
        f"req/s (p99 {p99(event_lat):.1f} ms); errors {errors}; per event: "
        f"{where['round_trips']:.0f} round trips ({where['savepoints']:.0f} savepoints), "
        f"{where['cpu_ms']:.1f} ms CPU"
    )
    return {
        "events_vs_bare_insert": {
            "value": round(events / bare, 3),
            "goal": ">= 0.5",
            "baseline": f"bare DRF one-INSERT endpoint, same gunicorn (-w 4) and database: "
            f"{bare:.0f} req/s; partner events {events:.0f} req/s at concurrency "
            f"{CONCURRENCY}; per event {where['round_trips']:.0f} round trips "
            f"({where['savepoints']:.0f} savepoints), {where['cpu_ms']:.1f} ms CPU",
            "errors": errors,
        }
    }
