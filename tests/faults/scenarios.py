"""The four fault scenarios of issue 10 (item 7) and how one is run.

a. ``kill``: kill -9 Celery workers during the fan-out (the post worker's main process,
   then a ping pool process, then a post pool process); supervisord restarts them.
b. ``broker``: stop Redis for 30 s during intake, then start it again.
c. ``postgres``: restart PostgreSQL (fast: connections terminated) twice during intake.
d. ``partners``: lenders that hang past their post timeout, reset the connection, answer
   500 or 200 with garbage (some after deciding, so the lender holds a lead whose answer
   was lost), and report accepted/approved/funded with duplicates.
"""

from __future__ import annotations

import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from django.db import close_old_connections

from partners.keys import issue_api_key
from partners.models import TrafficSource
from tests.faults import checks
from tests.faults.client import drive, make_applicants
from tests.faults.stack import LenderOverrides, Stack

Log = Callable[[str], None]
Fault = Callable[[Stack, Log], list[str]]

# Slower partners in the kill scenario, so that posts are in flight when a worker dies.
_SLOW = {"*": {"latency_ms": 400}}


def _kill_workers(stack: Stack, log: Log) -> list[str]:
    notes = []
    for program, child in (("worker-post", False), ("worker-ping", True), ("worker-post", True)):
        main_pid = stack.supervisor.pid(program)
        pid = stack.kill_worker(program, child=child)
        what = "pool process" if child else "main process"
        if child:
            notes.append(f"kill -9 {program} {what} {pid}")
        else:
            seconds = stack.wait_restarted(program, main_pid)
            notes.append(f"kill -9 {program} {what} {pid}: restarted in {seconds:.1f}s")
        log(notes[-1])
        time.sleep(4)
    return notes


def _stop_broker(stack: Stack, log: Log) -> list[str]:
    stack.redis.stop()
    log("broker stopped")
    time.sleep(30)
    stack.redis.start()
    log("broker started again after 30s")
    return ["redis stopped 30s"]


def _restart_postgres(stack: Stack, log: Log) -> list[str]:
    notes = []
    for _ in range(2):
        started = time.monotonic()
        stack.pg.restart()
        notes.append(f"postgres restarted in {time.monotonic() - started:.1f}s")
        log(notes[-1])
        time.sleep(8)
    return notes


def _no_fault(stack: Stack, log: Log) -> list[str]:
    return []


# Posts time out after 5 s (seed_demo's post_timeout_ms): a 7 s hang is past it.
_PARTNER_FAULTS: LenderOverrides = {
    "*": {"duplicate_postbacks": 1},
    "huaxia-consumer-finance": {"timeout_rate": 0.1, "hang_seconds": 7.0},
    "pearl-river-microcredit": {"reset_rate": 0.1, "faults_after_decision": True},
    "sichuan-hills-rural-credit": {"error_rate": 0.1},
    "yangtze-credit-technology": {
        "garbage_rate": 0.1,
        "faults_after_decision": True,
        "error_rate": 0.0,
    },
    "jiangnan-bank-consumer-loans": {"timeout_rate": 0.1, "hang_seconds": 7.0},
    "northern-star-lending": {"reset_rate": 0.05, "garbage_rate": 0.05},
    "pacific-bridge-capital": {"error_rate": 0.1, "faults_after_decision": True},
    "mountain-trust-credit": {"garbage_rate": 0.1},
}
# One lead in 1,000 meets three faults in a row: its retries (10 s, 20 s, 40 s) end
# within the scenario's wait.


@dataclass(frozen=True)
class Scenario:
    key: str
    title: str
    fault: Fault
    trigger_at: float  # share of applicants started when the fault begins
    lenders: LenderOverrides = field(default_factory=dict)
    quiet_timeout: float = 180.0


SCENARIOS: dict[str, Scenario] = {
    s.key: s
    for s in (
        Scenario("a", "kill -9 Celery workers during fan-out", _kill_workers, 0.25, _SLOW),
        Scenario("b", "broker stopped 30 s during intake", _stop_broker, 0.2),
        Scenario("c", "PostgreSQL restarted during intake", _restart_postgres, 0.25),
        Scenario(
            "d",
            "partners hang/reset/500/garbage; duplicate postbacks",
            _no_fault,
            0.0,
            _PARTNER_FAULTS,
            quiet_timeout=240.0,
        ),
    )
}


@dataclass
class Outcome:
    scenario: Scenario
    figures: dict[str, int]
    notes: list[str]
    quiet: checks.Quiet
    latencies_ms: list[float]
    seconds: float

    @property
    def failures(self) -> dict[str, int]:
        return {k: self.figures.get(k, 0) for k in checks.MUST_BE_ZERO if self.figures.get(k, 0)}


def new_source_key(name: str) -> tuple[Any, str]:
    """A traffic source of its own per scenario, so its referrals are counted apart."""
    close_old_connections()
    source = TrafficSource.objects.create(name=f"Fault test {name} {time.time():.0f}")
    return source.pk, issue_api_key(source=source, name="faults").plaintext


def run(
    stack: Stack, scenario: Scenario, *, referrals: int, rate: float, concurrency: int, log: Log
) -> Outcome:
    started = time.monotonic()
    journal = stack.start_simulator(scenario.key, scenario.lenders)
    source_id, key = new_source_key(scenario.key)
    since = checks.now()
    applicants = make_applicants(referrals, seed=ord(scenario.key), tag=f"F{scenario.key}")
    notes: list[str] = []
    fault_thread = threading.Thread(target=_run_fault, args=(scenario, stack, log, notes))

    def on_progress(started_count: int) -> None:
        if fault_thread.ident is None and started_count >= scenario.trigger_at * referrals:
            fault_thread.start()

    driven = drive(
        stack.base_url,
        key,
        applicants,
        rate=rate,
        concurrency=concurrency,
        deadline_seconds=referrals / rate + 120,
        on_progress=on_progress,
    )
    if fault_thread.ident is not None:
        fault_thread.join()
    log(f"intake done in {driven.seconds:.0f}s: {dict(driven.count())}")
    quiet = checks.wait_quiet(
        source_id=source_id,
        since=since,
        broker_url=stack.redis.url,
        journal=journal,
        timeout=scenario.quiet_timeout,
    )
    log(f"{'quiet' if quiet.reached else 'NOT quiet'} after {quiet.seconds:.0f}s: {quiet.last}")
    figures = checks.count(
        source_id=source_id,
        since=since,
        journal_path=journal,
        applicants=referrals,
        client_counts=driven.count(),
    )
    if not checks.wait_books_still(source_id=source_id, journal=journal):
        notes.append("events or charges were still being booked when the books were checked")
    period = time.strftime("%Y-%m", time.gmtime())
    for figure, command in (
        ("ledger_verify_failed", ("verify_consent_ledger",)),
        ("reconcile_failed", ("reconcile", "--period", period)),
    ):
        done = stack.manage(*command, check=False)
        figures[figure] = int(done.returncode != 0)
        if done.returncode:
            tail = (done.stdout + done.stderr).strip().splitlines()[-3:]
            notes.append(f"{command[0]} exit {done.returncode}: {' | '.join(tail)}")
    return Outcome(
        scenario, figures, notes, quiet, driven.latencies_ms(), time.monotonic() - started
    )


def _run_fault(scenario: Scenario, stack: Stack, log: Log, notes: list[str]) -> None:
    try:
        notes.extend(scenario.fault(stack, log))
    except Exception as exc:  # reported as a note; the counts still say what happened
        notes.append(f"fault injection failed: {exc!r}")
        log(traceback.format_exc())
