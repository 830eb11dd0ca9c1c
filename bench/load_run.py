"""Load run (issue 10, item 8): referrals at a steady rate for a while against the platform
as deployed (tests.faults.stack: gunicorn, PostgreSQL, the Redis broker, a Celery worker
per queue and beat under supervisord, the simulated partners), then the books are checked:
zero 5xx, every referral sent is stored once and terminal, every partner event stored,
every billable event charged once, every webhook delivered (tests.faults.checks).

``python -m bench.load_run --rate 10 --duration 600`` (``make bench`` runs 10 minutes,
``.ci/run`` 60 seconds). Writes ``load_run`` into bench/results.json: the sustained rate
(201s per second of intake), p50/p99 intake latency, and every count; exits 1 on a
mismatch. Runs in its own process because Django is set up on the stack's own database.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from tests.faults.stack import Stack

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results.json"


def _log(line: str) -> None:
    print(f"[load_run {time.strftime('%H:%M:%S')}] {line}", flush=True)


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return 0.0
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rate", type=float, default=10.0, help="referrals per second")
    parser.add_argument("--duration", type=float, default=600.0, help="seconds of intake")
    parser.add_argument("--concurrency", type=int, default=16, help="client threads")
    parser.add_argument("--quiet-timeout", type=float, default=240.0)
    parser.add_argument("--allow-failure", action="store_true", help="report mismatches but exit 0")
    args = parser.parse_args(argv)
    stack = Stack()
    os.environ.update(
        DATABASE_URL=stack.env["DATABASE_URL"],
        CELERY_BROKER_URL=stack.env["CELERY_BROKER_URL"],
        MARKETPLACE_VAR_DIR=stack.env["MARKETPLACE_VAR_DIR"],
        DJANGO_SETTINGS_MODULE="marketplace.settings",
    )
    os.environ.pop("CACHE_URL", None)
    try:
        stack.up(_log)
        import django

        django.setup()  # after the stack: settings read the stack's database
        result = _measure(stack, args)
    finally:
        stack.down()
        stack.remove()
    previous = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    RESULTS.write_text(
        json.dumps({**previous, "load_run": result}, indent=2, sort_keys=True) + "\n"
    )
    print(json.dumps(result, indent=2, sort_keys=True))
    if result["mismatches"]:
        print(f"load run: mismatches {result['mismatches']}")
        return 0 if args.allow_failure else 1
    print("load run: zero 5xx, counts in equal counts out")
    return 0


def _measure(stack: Stack, args: argparse.Namespace) -> dict[str, object]:
    # Only now: these load Django models, which need django.setup() on the stack's database.
    from tests.faults import checks
    from tests.faults.client import drive, make_applicants
    from tests.faults.scenarios import new_source_key

    journal = stack.start_simulator("load")
    source_id, key = new_source_key("load")
    since = checks.now()
    n = int(args.rate * args.duration)
    applicants = make_applicants(n, seed=8, tag="LOAD")
    _log(f"{n} referrals at {args.rate}/s")
    driven = drive(
        stack.base_url,
        key,
        applicants,
        rate=args.rate,
        concurrency=args.concurrency,
        deadline_seconds=args.duration + 120,
    )
    counts = driven.count()
    _log(f"intake done in {driven.seconds:.0f}s: {dict(counts)}")
    quiet = checks.wait_quiet(
        source_id=source_id,
        since=since,
        broker_url=stack.redis.url,
        journal=journal,
        timeout=args.quiet_timeout,
    )
    _log(f"{'quiet' if quiet.reached else 'NOT quiet'} after {quiet.seconds:.0f}s")
    figures = checks.count(
        source_id=source_id, since=since, journal_path=journal, applicants=n, client_counts=counts
    )
    mismatches = {k: figures[k] for k in checks.MUST_BE_ZERO if figures.get(k)}
    latencies = driven.latencies_ms()
    sustained = counts["created_201"] / driven.seconds if driven.seconds else 0.0
    return {
        "value": round(sustained, 2),
        "goal": f">= {args.rate}/s with 0 5xx and counts in == out",
        "baseline": f"target {args.rate} referrals/s for {args.duration:.0f}s, "
        f"{args.concurrency} client threads, gunicorn {stack.env['WEB_WORKERS']} workers",
        "p50_ms": round(_percentile(latencies, 0.50), 1),
        "p99_ms": round(_percentile(latencies, 0.99), 1),
        "five_xx": counts["saw_5xx"],
        "referrals_sent": n,
        "referrals_201": counts["created_201"],
        "referrals_stored": figures["referrals_stored"],
        "leads": figures["leads"],
        "partner_events_stored": figures["events_stored"],
        "billable_events": figures["billable_events"],
        "webhooks": figures["webhooks"],
        "quiet_after_s": round(quiet.seconds, 1),
        "mismatches": mismatches,
    }


if __name__ == "__main__":
    raise SystemExit(main())
