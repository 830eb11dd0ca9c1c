"""``python -m tests.faults [--scenarios abcd] [--referrals 300] [--allow-failure d]``:
run the fault scenarios against a stack of its own, print a table of counts, and exit
non-zero when a figure that must be 0 is not (except in scenarios named by
``--allow-failure``, reported as known failures)."""

from __future__ import annotations

import argparse
import os
import time

from tests.faults.stack import Stack


def _log(line: str) -> None:
    print(f"[faults {time.strftime('%H:%M:%S')}] {line}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scenarios", default="abcd", help="letters of the scenarios to run")
    parser.add_argument("--referrals", type=int, default=300, help="applicants per scenario")
    parser.add_argument("--rate", type=float, default=6.0, help="referrals per second")
    parser.add_argument("--concurrency", type=int, default=8, help="client threads")
    parser.add_argument(
        "--allow-failure", default="", help="letters of scenarios whose failures do not fail"
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
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
        # Only now: the scenarios load Django models, which need the stack's database.
        from tests.faults.report import print_table, run_all

        outcomes = run_all(stack, args, _log)
    finally:
        _log("stopping the stack")
        stack.down()
        if not args.keep:
            stack.remove()
        else:
            _log(f"kept {stack.root}")
    return print_table(outcomes, allowed=set(args.allow_failure))


if __name__ == "__main__":
    raise SystemExit(main())
