"""Webhook delivery rate: ``partners.outbound`` against a raw httpx POST loop, same
loopback receiver, same concurrency, same run.

Outbound does everything a real delivery does per message: claims it under a row lock
(reserving the next retry slot), decrypts the endpoint's secret, signs per Standard
Webhooks, POSTs, logs the attempt and marks the message delivered. N messages are enqueued
first (through ``outbound.enqueue``, delivery tasks held back), then CONCURRENCY threads
call ``outbound.attempt`` on them, as that many Celery worker threads would. The baseline
is the same number of POSTs of the same body from the same number of threads, each with a
keep-alive ``httpx.Client``. ``webhooks_vs_raw_post`` = delivered/s / raw POSTs/s.
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
    from partners.webhooks import create_endpoint

    partner, _ = Partner.objects.get_or_create(
        slug="bench-webhooks",
        defaults={"name": "Bench webhooks", "legal_name": "Bench", "status": PartnerStatus.LIVE},
    )
    partner.webhooks.update(is_active=False)
    create_endpoint(partner=partner, url=url)
    return partner


def _enqueue(partner: Any, n: int) -> tuple[list[str], float]:
    from partners import outbound
    from partners.tasks import deliver_webhook

    started = time.perf_counter()
    ids: list[str] = []
    # Delivery tasks are held back: the threads below are the workers.
    with mock.patch.object(deliver_webhook, "delay"), transaction.atomic():
        for _ in range(n):
            made = outbound.enqueue(
                partner_id=partner.id,
                event_type="lead.delivered",
                data={"lead_id": str(uuid.uuid4()), "status": "delivered"},
                dedupe_key=f"bench:{uuid.uuid4()}",
            )
            ids.extend(m.id for m in made)
    return ids, time.perf_counter() - started


CPU_SECONDS: dict[str, float] = {}  # this process's CPU per phase (the receiver excluded)


def _threads(work: Any, phase: str) -> float:
    threads = [threading.Thread(target=work) for _ in range(CONCURRENCY)]
    cpu, began = time.process_time(), time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    CPU_SECONDS[phase] = CPU_SECONDS.get(phase, 0.0) + time.process_time() - cpu
    return time.perf_counter() - began


def _deliver(ids: list[str]) -> tuple[float, int]:
    from partners import outbound

    todo: queue.SimpleQueue[str] = queue.SimpleQueue()
    for message_id in ids:
        todo.put(message_id)
    delivered = 0
    lock = threading.Lock()

    def worker() -> None:
        nonlocal delivered
        done = 0
        try:
            while True:
                try:
                    message_id = todo.get_nowait()
                except queue.Empty:
                    break
                if outbound.attempt(message_id) == "delivered":
                    done += 1
        finally:
            close_old_connections()
            with lock:
                delivered += done

    elapsed = _threads(worker, "webhooks")
    return delivered / elapsed, len(ids) - delivered


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
            ids, enqueue_seconds = _enqueue(partner, MESSAGES)
            enqueue_rates.append(len(ids) / enqueue_seconds)
            rate, failed = _deliver(ids)
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
            f"loopback receiver: {raw:.0f}/s; outbound.attempt (claim, sign, POST, log, "
            f"settle) {hooks:.0f}/s; {CONCURRENCY} threads, {MESSAGES} messages x {ROUNDS}",
            "enqueue_per_s": round(enqueue),
            "cpu_ms_per_delivery": round(cpu_hook, 2),
            "cpu_ms_per_raw_post": round(cpu_raw, 2),
            "errors": errors,
        }
    }
