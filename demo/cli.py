"""Run the partner simulator on its own: ``python -m demo.cli --config lenders.json``
(``manage.py simulate_partners`` is the same with Django's command line).

No Django: like the rest of the simulator, this imports only the standard library,
``httpx`` and ``standardwebhooks``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Sequence
from typing import Protocol

from demo.config import SimulatorConfig, SimulatorConfigError, load_config
from demo.server import KINDS, PartnerSimulator


def describe(simulator: PartnerSimulator) -> list[str]:
    """Human-readable lines: each lender's ping/post/webhook URLs."""
    lines = [f"Partner simulator listening on {simulator.base_url}"]
    for lender in simulator.lenders:
        lines.append(f"  {lender.slug}:")
        for kind in KINDS:
            lines.append(f"    {kind:<8} {simulator.url_for(lender.slug, kind)}")
    return lines


class Writable(Protocol):
    def write(self, text: str, /) -> object: ...

    def flush(self) -> object: ...


def serve(
    config: SimulatorConfig,
    *,
    host: str = "127.0.0.1",
    port: int = 8900,
    duration: float | None = None,
    out: Writable | None = None,
    log_path: str | None = None,
    postback_retries: int = 5,
    postback_max_backoff: float = 5.0,
) -> dict[str, dict[str, int]]:
    """Run until Ctrl-C, SIGTERM (or ``duration`` seconds), printing URLs first and stats
    last; ``log_path``: the lenders' own JSON-lines log (:mod:`demo.journal`)."""
    stream: Writable = out if out is not None else sys.stdout

    def emit(line: str) -> None:
        stream.write(line + "\n")
        stream.flush()

    simulator = PartnerSimulator(
        config.lenders,
        api_base_url=config.api_base_url,
        host=host,
        port=port,
        seed=config.seed,
        log_path=log_path,
        postback_retries=postback_retries,
        postback_backoff=0.25,
        postback_max_backoff=postback_max_backoff,
    )
    simulator.start()
    try:
        for line in describe(simulator):
            emit(line)
        if config.api_base_url:
            emit(f"Outcome postbacks go to {config.api_base_url}")
        emit("Serving; press Ctrl-C to stop.")
        deadline = None if duration is None else time.monotonic() + duration
        try:
            while deadline is None or time.monotonic() < deadline:
                left = 0.2 if deadline is None else deadline - time.monotonic()
                time.sleep(max(0.0, min(0.2, left)))
        except KeyboardInterrupt:
            pass
        simulator.wait_idle(2.0)
    finally:
        simulator.stop()
    stats = simulator.stats()
    emit("Stats:")
    emit(json.dumps(stats, indent=2))
    return stats


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Simulated partner lenders.")
    parser.add_argument("--config", required=True, help="JSON config file")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8900)
    parser.add_argument("--duration", type=float, default=None, help="seconds (default: forever)")
    add_postback_options(parser)
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config)
    except SimulatorConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    serve(
        config,
        host=args.host,
        port=args.port,
        duration=args.duration,
        log_path=args.log,
        postback_retries=args.postback_retries,
        postback_max_backoff=args.postback_max_backoff,
    )
    return 0


def add_postback_options(parser: argparse.ArgumentParser) -> None:
    """The options of the lenders' log and of their postback retries (shared with
    ``manage.py simulate_partners``)."""
    parser.add_argument(
        "--log",
        default=None,
        help="append every post, ping, webhook and "
        "postback to this JSON-lines file (the lenders' own log)",
    )
    parser.add_argument(
        "--postback-retries",
        type=int,
        default=5,
        help="retries of an outcome postback the platform did not take",
    )
    parser.add_argument(
        "--postback-max-backoff",
        type=float,
        default=5.0,
        help="longest pause between two postback retries, in seconds",
    )


if __name__ == "__main__":
    sys.exit(main())
