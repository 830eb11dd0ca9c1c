"""What the simulated lenders report back to the platform API: outcome events of accepted
leads and consent-withdrawal acks (built by :func:`outcome_job` and :func:`ack_job`), sent
by a few worker threads with retries.

Jobs of one lead (or one withdrawal) go to one worker, so its events arrive in order; a
job's events after one that could not be delivered are given up too (the platform would
refuse them). Every delivery ends counted once, as sent or failed. Retries back off
exponentially up to ``max_backoff`` and honour a ``Retry-After``; every attempt is written
to the lenders' log (:mod:`demo.journal`).
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from urllib.parse import quote

import httpx

from demo.journal import Journal
from demo.lenders import OutcomeDraws, SimulatedLender, outcome_events

logger = logging.getLogger(__name__)

#: ``count(slug, counter)``: add one to a lender's counter.
Count = Callable[[str, str], None]


@dataclass
class Delivery:
    url: str
    headers: dict[str, str]
    body: dict[str, Any]
    stamp_field: str  # filled with the time of the first attempt, kept across retries
    sent_counter: str
    failed_counter: str
    # False for a deliberate duplicate: its failure does not stop the events after it.
    required: bool = True
    lead_id: str | None = None  # for the log


@dataclass
class Job:
    slug: str
    shard_key: str
    deliveries: list[Delivery]
    due: float = 0.0


def _now_iso() -> str:
    return datetime.now(tz=UTC).isoformat(timespec="milliseconds")


class Postbacks:
    """A pool of postback workers. Take a slot with :meth:`reserve` before answering the
    request that caused the job, then :meth:`submit` it: :meth:`wait_idle` after the answer
    then covers the job."""

    def __init__(
        self,
        *,
        count: Count,
        stop_event: threading.Event,
        workers: int = 4,
        retries: int = 5,
        backoff: float = 0.05,
        timeout: float = 5.0,
        max_backoff: float = 5.0,
        journal: Journal | None = None,
    ) -> None:
        self._count = count
        self._max_backoff = max(0.0, max_backoff)
        self._journal = journal or Journal(None)
        self._stop_event = stop_event  # set: stop waiting and retrying, fail what is left
        self._retries = max(0, retries)
        self._backoff = max(0.0, backoff)
        self._timeout = timeout
        self._queues: list[queue.Queue[Job | None]] = [
            queue.Queue() for _ in range(max(1, workers))
        ]
        self._workers: list[threading.Thread] = []
        self._client: httpx.Client | None = None
        self._client_lock = threading.Lock()
        self._pending = 0
        self._accepting_jobs = True
        self._pending_cv = threading.Condition()

    def start(self) -> None:
        for index, jobs in enumerate(self._queues):
            worker = threading.Thread(
                target=self._worker_loop,
                args=(jobs,),
                name=f"partner-simulator-postbacks-{index}",
                daemon=True,
            )
            worker.start()
            self._workers.append(worker)

    def stop(self, deadline: float) -> None:
        """Stop the workers (by ``deadline``, a ``time.monotonic()`` value); jobs still
        queued are counted as failed. Set the stop event first."""
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
                    self._fail(job.slug, job.deliveries)
                    self._job_done()

    def reserve(self) -> None:
        with self._pending_cv:
            self._pending += 1

    def submit(self, job: Job, *, delay: float) -> None:
        """Queue a job whose slot was taken with :meth:`reserve`, to start after ``delay``
        seconds."""
        job.due = time.monotonic() + delay
        with self._pending_cv:
            if self._accepting_jobs:
                shard = zlib.crc32(job.shard_key.encode()) % len(self._queues)
                self._queues[shard].put(job)
                return
        self._fail(job.slug, job.deliveries)
        self._job_done()

    def wait_idle(self, timeout: float) -> bool:
        """Wait until every reserved job has been delivered or given up on. True if idle,
        False on timeout."""
        with self._pending_cv:
            return self._pending_cv.wait_for(lambda: self._pending == 0, timeout)

    def _job_done(self) -> None:
        with self._pending_cv:
            self._pending -= 1
            if self._pending <= 0:
                self._pending_cv.notify_all()

    def _fail(self, slug: str, deliveries: Sequence[Delivery]) -> None:
        for delivery in deliveries:
            self._count(slug, delivery.failed_counter)

    def _http_client(self) -> httpx.Client:
        """One client shared by the workers (thread-safe), created on first use."""
        with self._client_lock:
            if self._client is None:
                self._client = httpx.Client(timeout=self._timeout)
            return self._client

    def _worker_loop(self, jobs: queue.Queue[Job | None]) -> None:
        while True:
            job = jobs.get()
            if job is None:
                return
            try:
                if self._stop_event.is_set():
                    self._fail(job.slug, job.deliveries)
                else:
                    self._run_job(self._http_client(), job)
            except Exception:  # never let a worker die
                logger.exception("partner simulator: postback job crashed")
                self._fail(job.slug, job.deliveries)
            finally:
                self._job_done()

    def _run_job(self, client: httpx.Client, job: Job) -> None:
        delay = job.due - time.monotonic()
        if delay > 0 and self._stop_event.wait(delay):
            self._fail(job.slug, job.deliveries)
            return
        for index, delivery in enumerate(job.deliveries):
            delivered = self._deliver(client, job.slug, delivery)
            self._journal.write(
                "postback_done",
                slug=job.slug,
                lead_id=delivery.lead_id,
                event_id=delivery.body.get("event_id"),
                type=delivery.body.get("type"),
                duplicate=not delivery.required,
                delivered=delivered,
            )
            if delivered:
                self._count(job.slug, delivery.sent_counter)
            elif delivery.required:
                # Later events make no sense to the platform without this one.
                self._fail(job.slug, [d for d in job.deliveries[index:] if d.required])
                return
            else:
                self._count(job.slug, delivery.failed_counter)

    def _deliver(self, client: httpx.Client, slug: str, delivery: Delivery) -> bool:
        if not delivery.body.get(delivery.stamp_field):
            delivery.body[delivery.stamp_field] = _now_iso()
        content = json.dumps(delivery.body).encode()
        wait_hint: float | None = None
        for attempt in range(self._retries + 1):
            if attempt:
                backoff = min(self._backoff * 2 ** (attempt - 1), self._max_backoff)
                if wait_hint is not None:
                    backoff = min(max(backoff, wait_hint), self._max_backoff)
                if self._stop_event.wait(backoff):
                    return False
            try:
                response = client.post(delivery.url, content=content, headers=delivery.headers)
            except httpx.TransportError as exc:
                logger.debug("partner simulator: %s postback to %s: %r", slug, delivery.url, exc)
                self._log_attempt(slug, delivery, attempt, None)
                wait_hint = None
                continue
            except httpx.HTTPError as exc:  # e.g. an invalid URL: retrying will not help
                logger.warning("partner simulator: %s postback failed: %r", slug, exc)
                return False
            self._log_attempt(slug, delivery, attempt, response.status_code)
            wait_hint = _retry_after(response)
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

    def _log_attempt(self, slug: str, delivery: Delivery, attempt: int, status: int | None) -> None:
        self._journal.write(
            "postback",
            slug=slug,
            lead_id=delivery.lead_id,
            event_id=delivery.body.get("event_id"),
            type=delivery.body.get("type"),
            duplicate=not delivery.required,
            attempt=attempt,
            status=status,
        )


def _retry_after(response: httpx.Response) -> float | None:
    """Seconds from a numeric ``Retry-After`` header, else None."""
    value = response.headers.get("Retry-After", "")
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if seconds >= 0 else None


# --------------------------------------------------------------------------- jobs


def outcome_job(
    *,
    api_base_url: str | None,
    lender: SimulatedLender,
    lead_id: str,
    requested: Decimal,
    currency: str | None,
    u: OutcomeDraws,
) -> Job | None:
    """The lender's outcome events for an accepted lead, to its platform API; None when
    postbacks are off (no platform URL or no API key)."""
    if api_base_url is None or lender.api_key is None:
        return None
    url = f"{api_base_url}/api/v1/partner/leads/{quote(lead_id, safe='')}/events"
    deliveries: list[Delivery] = []
    for body in outcome_events(
        lender, lead_id=lead_id, requested=requested, currency=currency, u=u
    ):
        deliveries.append(
            Delivery(
                url=url,
                headers=_api_headers(lender, idempotency_key=body["event_id"]),
                body=body,
                stamp_field="occurred_at",
                sent_counter="events_sent",
                failed_counter="events_failed",
                lead_id=lead_id,
            )
        )
        # The same event again (one body object, so the same occurred_at), under a new
        # Idempotency-Key: only the event id makes it a duplicate to the platform.
        deliveries.extend(
            Delivery(
                url=url,
                headers=_api_headers(lender, idempotency_key=f"{body['event_id']}-dup{n}"),
                body=body,
                stamp_field="occurred_at",
                sent_counter="duplicates_sent",
                failed_counter="duplicates_failed",
                required=False,
                lead_id=lead_id,
            )
            for n in range(1, lender.duplicate_postbacks + 1)
        )
    return Job(slug=lender.slug, shard_key=lead_id, deliveries=deliveries)


def ack_job(
    *, api_base_url: str | None, lender: SimulatedLender, withdrawal_id: object, lead_ids: list[str]
) -> Job | None:
    """The lender's acknowledgement of a consent withdrawal (its data is deleted); None when
    postbacks are off or the withdrawal has no usable id."""
    if api_base_url is None or lender.api_key is None:
        return None
    if not isinstance(withdrawal_id, str | int) or isinstance(withdrawal_id, bool):
        return None
    wid = quote(str(withdrawal_id), safe="")
    delivery = Delivery(
        url=f"{api_base_url}/api/v1/partner/consent-withdrawals/{wid}/ack",
        headers=_api_headers(lender, idempotency_key=f"{lender.slug}-ack-{withdrawal_id}"),
        body={"withdrawal_id": str(withdrawal_id), "lead_ids": list(lead_ids)},
        stamp_field="acknowledged_at",
        sent_counter="acks_sent",
        failed_counter="acks_failed",
    )
    return Job(slug=lender.slug, shard_key=str(withdrawal_id), deliveries=[delivery])


def _api_headers(lender: SimulatedLender, *, idempotency_key: str) -> dict[str, str]:
    return {
        "Authorization": f"Bearer {lender.api_key}",
        "Idempotency-Key": idempotency_key,
        "Content-Type": "application/json",
        "Accept": "application/json",
        "User-Agent": f"PartnerSimulator/1.0 ({lender.slug})",
    }
