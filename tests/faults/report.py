"""Runs the chosen scenarios one after the other and prints their counts side by side."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from tests.faults import checks
from tests.faults.scenarios import SCENARIOS, Outcome, run
from tests.faults.stack import Stack


def run_all(stack: Stack, args: argparse.Namespace, log: Callable[[str], None]) -> list[Outcome]:
    outcomes = []
    for letter in args.scenarios:
        scenario = SCENARIOS[letter]
        log(f"scenario {letter}: {scenario.title} ({args.referrals} referrals)")
        outcome = run(
            stack,
            scenario,
            referrals=args.referrals,
            rate=args.rate,
            concurrency=args.concurrency,
            log=log,
        )
        log(f"scenario {letter} done in {outcome.seconds:.0f}s; failures: {outcome.failures}")
        outcomes.append(outcome)
    return outcomes


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    return values[min(len(values) - 1, int(q * len(values)))]


def print_table(outcomes: list[Outcome], *, allowed: set[str]) -> int:
    """The table; 1 if a figure in checks.MUST_BE_ZERO is not 0 outside ``allowed``."""
    if not outcomes:
        return 1
    names: list[str] = []
    for outcome in outcomes:
        names.extend(k for k in outcome.figures if k not in names)
    width = max(len(n) for n in names) + 2
    header = "".join(f"{o.scenario.key:>10}" for o in outcomes)
    print(f"\n{'figure':<{width}}{header}   (* must be 0)")
    for name in names:
        mark = "*" if name in checks.MUST_BE_ZERO else " "
        row = "".join(f"{o.figures.get(name, ''):>10}" for o in outcomes)
        print(f"{mark}{name:<{width - 1}}{row}")
    extra = {
        "quiet_after_s": [
            f"{o.quiet.seconds:.0f}{'' if o.quiet.reached else '!'}" for o in outcomes
        ],
        "intake_p50_ms": [f"{_percentile(o.latencies_ms, 0.5):.0f}" for o in outcomes],
        "intake_p99_ms": [f"{_percentile(o.latencies_ms, 0.99):.0f}" for o in outcomes],
        "scenario_s": [f"{o.seconds:.0f}" for o in outcomes],
    }
    for name, values in extra.items():
        print(f" {name:<{width - 1}}" + "".join(f"{v:>10}" for v in values))
    status = 0
    for outcome in outcomes:
        key = outcome.scenario.key
        for note in outcome.notes:
            print(f"  {key}: {note}")
        failures = outcome.failures
        if not failures:
            print(f"PASS {key}: {outcome.scenario.title}")
        elif key in allowed:
            print(f"KNOWN FAILURE (allowed) {key}: {outcome.scenario.title}: {failures}")
        else:
            print(f"FAIL {key}: {outcome.scenario.title}: {failures}")
            status = 1
    passed = sum(1 for o in outcomes if not o.failures)
    print(f"fault scenarios without a mismatch: {passed} of {len(outcomes)}")
    return status
