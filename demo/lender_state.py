"""What the partner simulator keeps per lender: its seeded random stream (a fixed number of
draws per request, so a sequence of requests always gets the same answers), its counters
(:data:`STAT_KEYS`) and what it received, all guarded by the simulator's lock.
"""

from __future__ import annotations

import random
import threading
from typing import Any

from standardwebhooks.webhooks import Webhook

from demo.lenders import SimulatedLender

#: Counters reported by :meth:`PartnerSimulator.stats`, per lender.
STAT_KEYS: tuple[str, ...] = (
    "pings",  # signed, well-formed JSON pings received (including faulted ones)
    "bids",
    "ping_rejected",
    "posts",  # signed, well-formed JSON posts received (including faulted ones)
    "accepted",
    "rejected",
    "duplicates",  # posts for a lead_id already decided: first decision replayed
    "errors_injected",  # all injected faults: 500 + garbage + hang + reset
    "http500_injected",
    "garbage_injected",
    "timeouts_injected",
    "resets_injected",
    "answers_lost",  # posts decided (accepted or rejected) but answered with a fault
    "bad_signatures",
    "bad_requests",  # 400: malformed JSON or a body that breaks the contract
    "pii_in_ping",
    "webhooks",
    "withdrawals",
    "events_sent",
    "events_failed",
    "duplicates_sent",  # outcome events re-sent on purpose (duplicate_postbacks)
    "duplicates_failed",
    "acks_sent",
    "acks_failed",
)


class _LenderState:
    def __init__(self, lender: SimulatedLender, seed: int) -> None:
        self.lender = lender
        self.webhook = Webhook(lender.secret)
        # String seeds are hashed with SHA-512: stable across processes and PYTHONHASHSEED.
        self.rng = random.Random(f"{seed}:{lender.slug}")  # noqa: S311 - simulation only
        self.rng_lock = threading.Lock()
        self.counters: dict[str, int] = dict.fromkeys(STAT_KEYS, 0)
        self.posts: list[dict[str, Any]] = []
        self.pings: list[dict[str, Any]] = []
        self.webhooks: list[dict[str, Any]] = []
        self.violations: list[dict[str, Any]] = []
        self.decisions: dict[str, dict[str, Any]] = {}
        self.deletion_requested: set[str] = set()

    def draw(self, n: int) -> list[float]:
        with self.rng_lock:
            return [self.rng.random() for _ in range(n)]
