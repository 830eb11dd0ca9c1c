"""Referrals sent as a real operator's client sends them: each applicant once, with its own
``Idempotency-Key``; on a connection error, a timeout, a 5xx or a 409 "still running" the
same request is sent again with the same key (backing off), until a final answer or the
deadline. Every answer is kept, so a 5xx later healed by a retry still counts as a 5xx."""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import httpx

from demo.applicants import synthetic_referral

RETRY_409_CODES = {"idempotency_request_in_progress"}


@dataclass
class Applicant:
    key: str
    body: dict[str, Any]
    statuses: list[int | str] = field(default_factory=list)  # "conn" for no answer
    final: int | None = None
    referral_id: str | None = None
    latency_ms: float = 0.0  # of the first attempt that got a final answer
    sent_at: float = 0.0


@dataclass
class Driven:
    applicants: list[Applicant]
    seconds: float

    def count(self) -> Counter[str]:
        """Client-side counts: how many got a 201, saw a 5xx or no answer on the way, ended
        without a 201, and how many attempts in all."""
        counts: Counter[str] = Counter()
        for a in self.applicants:
            counts["applicants"] += 1
            counts["created_201"] += a.final == 201
            counts["saw_5xx"] += any(isinstance(s, int) and s >= 500 for s in a.statuses)
            counts["saw_no_answer"] += "conn" in a.statuses
            counts["saw_409"] += 409 in a.statuses
            counts["final_not_201"] += a.final != 201
            counts["attempts"] += len(a.statuses)
        return counts

    def latencies_ms(self) -> list[float]:
        return sorted(a.latency_ms for a in self.applicants if a.final == 201)


def make_applicants(
    n: int, *, seed: int, tag: str, with_reference_share: float = 0.5
) -> list[Applicant]:
    """``n`` synthetic applicants; about ``with_reference_share`` of them carry a
    ``source_reference`` (the rest rely on the Idempotency-Key alone to stay one referral)."""
    rng = random.Random(seed)
    applicants = []
    for index in range(n):
        body = synthetic_referral(rng, index)
        if rng.random() < with_reference_share:
            body["source_reference"] = f"{tag}-{index:06d}"
        else:
            body.pop("source_reference", None)
        applicants.append(Applicant(key=f"{tag}-{index:06d}-{uuid.uuid4().hex[:8]}", body=body))
    return applicants


def send_one(
    client: httpx.Client, source_key: str, applicant: Applicant, *, deadline: float
) -> None:
    headers = {"Authorization": f"Bearer {source_key}", "Idempotency-Key": applicant.key}
    backoff = 0.5
    applicant.sent_at = time.time()
    while True:
        started = time.monotonic()
        try:
            response = client.post("/api/v1/referrals", json=applicant.body, headers=headers)
        except httpx.TransportError:
            applicant.statuses.append("conn")
        else:
            applicant.statuses.append(response.status_code)
            if not _retryable(response):
                applicant.final = response.status_code
                applicant.latency_ms = (time.monotonic() - started) * 1000
                if response.status_code == 201:
                    applicant.referral_id = response.json().get("id")
                return
        if time.monotonic() + backoff > deadline:
            return
        time.sleep(backoff)
        backoff = min(backoff * 2, 5.0)


def _send_with_client(
    client: Callable[[], httpx.Client], source_key: str, applicant: Applicant, deadline: float
) -> None:
    send_one(client(), source_key, applicant, deadline=deadline)


def _retryable(response: httpx.Response) -> bool:
    if response.status_code >= 500 or response.status_code == 429:
        return True
    if response.status_code == 409:
        try:
            code = response.json().get("error", {}).get("code")
        except ValueError:
            return False
        return code in RETRY_409_CODES
    return False


def drive(
    base_url: str,
    source_key: str,
    applicants: list[Applicant],
    *,
    rate: float,
    concurrency: int,
    deadline_seconds: float,
    on_progress: Callable[[int], None] | None = None,
) -> Driven:
    """Send ``applicants`` at about ``rate`` per second from ``concurrency`` threads; each
    retries until a final answer or ``deadline_seconds`` after the start. ``on_progress``
    is called (from the pacing thread) with the number started so far, e.g. to inject a
    fault a third of the way through."""
    started = time.monotonic()
    deadline = started + deadline_seconds
    local = threading.local()
    clients: list[httpx.Client] = []
    lock = threading.Lock()

    def client() -> httpx.Client:
        if not hasattr(local, "client"):
            local.client = httpx.Client(base_url=base_url, timeout=30.0)
            with lock:
                clients.append(local.client)
        return local.client

    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="faults-client") as pool:
        futures = []
        for index, applicant in enumerate(applicants):
            due = started + index / rate
            pause = due - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            futures.append(pool.submit(_send_with_client, client, source_key, applicant, deadline))
            if on_progress is not None:
                on_progress(index + 1)
        for future in futures:
            future.result()
    for c in clients:
        c.close()
    return Driven(applicants, time.monotonic() - started)
