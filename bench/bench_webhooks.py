"""Webhook delivery rate: ``partners.webhook_delivery`` against a raw httpx POST loop, same
loopback receiver, same concurrency, same run.

The production path, as a Celery worker runs it: N messages are enqueued first through
``webhook_delivery.enqueue`` in one transaction; the ``deliver_webhooks`` tasks it queues at commit
(batches of ids) are captured instead of sent to the broker, and worker threads then call
the task (``deliver_webhooks(batch)``, as a worker does) on each. Per batch that claims
every message with one compare-and-set UPDATE, reads the endpoint, decrypts its secret,
signs per Standard Webhooks, POSTs ``webhook_delivery.POST_CONCURRENCY`` at a time, logs every
attempt and marks them delivered. Workers x POST_CONCURRENCY = CONCURRENCY POSTs in flight.
The baseline is the same number of POSTs of the same body from CONCURRENCY threads, each
with a keep-alive ``httpx.Client``. ``webhooks_vs_raw_post`` = delivered/s / raw POSTs/s.
"""

from __future__ import annotations

import queue
import statistics
import subprocess
import sys
import threading
import time
import uuid
from typing import Any
from unittest import mock

import httpx
from django.db import close_old_connections, transaction

PORT = 8932
CONCURRENCY = 4
MESSAGES = 1500
ROUNDS = 3
GOAL = 0.5

RECEIVER = """
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as a real receiver behind a proxy

    def do_POST(self):
        self.rfile.read(int(self.headers.get("content-length") or 0))
        self.send_response(204)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass

ThreadingHTTPServer.daemon_threads = True
ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
"""


def _setup(url: str) -> Any:
    from partners.models import Partner, PartnerStatus
    from partners.webhook_signing import create_endpoint

    partner, _ = Partner.objects.get_or_create(
        slug="bench-webhooks",
        defaults={"name": "Bench webhooks", "legal_name": "Bench", "status": PartnerStatus.LIVE},
    )
    partner.webhooks.update(is_active=False)
    create_endpoint(partner=partner, url=url)
    return partner


def _enqueue(partner: Any, n: int) -> tuple[list[list[str]], float]:
    from partners import webhook_delivery
    from partners.tasks import deliver_webhooks

    started = time.perf_counter()
    batches: list[list[str]] = []
    # The tasks enqueue queues at commit are captured: the threads below are the workers.
    with (
        mock.patch.object(deliver_webhooks, "delay", side_effect=batches.append),
        transaction.atomic(),
    ):
        for _ in range(n):
            webhook_delivery.enqueue(
                partner_id=partner.id,
                event_type="lead.delivered",
                data={"lead_id": str(uuid.uuid4()), "status": "delivered"},
                dedupe_key=f"bench:{uuid.uuid4()}",
            )
    return batches, time.perf_counter() - started


CPU_SECONDS: dict[str, float] = {}  # this process's CPU per phase (the receiver excluded)


def _threads(work: Any, phase: str, count: int = CONCURRENCY) -> float:
    threads = [threading.Thread(target=work) for _ in range(count)]
    cpu, began = time.process_time(), time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    CPU_SECONDS[phase] = CPU_SECONDS.get(phase, 0.0) + time.process_time() - cpu
    return time.perf_counter() - began


def _workers() -> int:
    from partners import webhook_delivery

    workers, rest = divmod(CONCURRENCY, webhook_delivery.POST_CONCURRENCY)
    assert workers and not rest, "CONCURRENCY must be a multiple of POST_CONCURRENCY"
    return workers


def _deliver(batches: list[list[str]]) -> tuple[float, int]:
    from partners.tasks import deliver_webhooks

    todo: queue.SimpleQueue[list[str]] = queue.SimpleQueue()
    for batch in batches:
        todo.put(batch)
    delivered = 0
    lock = threading.Lock()

    def worker() -> None:
        nonlocal delivered
        done = 0
        try:
            while True:
                try:
                    batch = todo.get_nowait()
                except queue.Empty:
                    break
                statuses = deliver_webhooks(batch)
                done += sum(status == "delivered" for status in statuses.values())
        finally:
            close_old_connections()
            with lock:
                delivered += done

    elapsed = _threads(worker, "webhooks", _workers())
    return delivered / elapsed, sum(map(len, batches)) - delivered


def _raw(url: str, n: int, body: bytes) -> tuple[float, int]:
    remaining = iter(range(n))
    lock = threading.Lock()
    ok = 0

    def worker() -> None:
        nonlocal ok
        done = 0
        with httpx.Client(timeout=10) as client:
            while True:
                with lock:
                    if next(remaining, None) is None:
                        break
                response = client.post(
                    url, content=body, headers={"content-type": "application/json"}
                )
                done += 200 <= response.status_code < 300
        with lock:
            ok += done

    elapsed = _threads(worker, "raw")
    return ok / elapsed, n - ok


def run() -> dict[str, dict[str, Any]]:
    from partners import webhook_delivery

    url = f"http://127.0.0.1:{PORT}/hooks"
    receiver = subprocess.Popen([sys.executable, "-c", RECEIVER, str(PORT)])
    try:
        for _ in range(100):
            try:
                httpx.post(url, content=b"{}", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        partner = _setup(url)
        body = (
            b'{"type":"lead.delivered","timestamp":"2026-11-22T08:00:00+00:00",'
            b'"data":{"lead_id":"' + str(uuid.uuid4()).encode() + b'","status":"delivered"}}'
        )
        raw_rates, hook_rates, enqueue_rates, errors = [], [], [], 0
        for _ in range(ROUNDS):
            rate, failed = _raw(url, MESSAGES, body)
            raw_rates.append(rate)
            errors += failed
            batches, enqueue_seconds = _enqueue(partner, MESSAGES)
            enqueue_rates.append(sum(map(len, batches)) / enqueue_seconds)
            rate, failed = _deliver(batches)
            hook_rates.append(rate)
            errors += failed
    finally:
        receiver.terminate()
        receiver.wait(timeout=10)
    raw, hooks = statistics.median(raw_rates), statistics.median(hook_rates)
    enqueue = statistics.median(enqueue_rates)
    # Both loops are bound by this process's CPU (the GIL): these explain the ratio.
    cpu_raw = CPU_SECONDS["raw"] / (MESSAGES * ROUNDS) * 1000
    cpu_hook = CPU_SECONDS["webhooks"] / (MESSAGES * ROUNDS) * 1000
    print(
        f"raw httpx POST: {raw:.0f}/s; outbound deliveries: {hooks:.0f}/s "
        f"(rounds {[round(r) for r in hook_rates]} vs {[round(r) for r in raw_rates]}); "
        f"CPU per message {cpu_hook:.2f} ms vs {cpu_raw:.2f} ms; "
        f"enqueue {enqueue:.0f}/s; errors {errors}"
    )
    return {
        "webhooks_vs_raw_post": {
            "value": round(hooks / raw, 3),
            "goal": f">= {GOAL}",
            "baseline": f"raw httpx POST loop (keep-alive client per thread) to the same "
            f"loopback receiver: {raw:.0f}/s; deliver_webhooks task (batch claim, sign, POST, "
            f"log, settle) {hooks:.0f}/s; {CONCURRENCY} POSTs in flight ({_workers()} "
            f"worker(s) x {webhook_delivery.POST_CONCURRENCY}), {MESSAGES} messages x {ROUNDS}",
            "enqueue_per_s": round(enqueue),
            "cpu_ms_per_delivery": round(cpu_hook, 2),
            "cpu_ms_per_raw_post": round(cpu_raw, 2),
            "errors": errors,
        }
    }
