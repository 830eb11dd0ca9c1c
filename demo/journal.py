"""The simulated lenders' own log: one JSON object per line for every post, webhook and
outcome postback, written as it happens, so a test counts from the partners' side what
the platform did (how often each lead was posted, which answers were lost, which events
the platform refused) without trusting the platform's database.

Records (``t`` is Unix time in seconds, on the same clock as the platform on loopback):

* ``{"kind": "post", "slug", "lead_id", "received_at", "t", "answer", "decision"}``:
  ``answer`` is what the lender sent back: ``accept``/``reject`` (a clean answer),
  ``http500``, ``garbage``, ``reset`` (no answer) or ``hang`` (answered after the hang),
  or ``bad_request``; ``decision`` is the lender's decision on the lead (``accept``,
  ``reject``, also on a replayed duplicate post), null when it took none. So
  ``decision == "accept"`` with an ``answer`` other than ``accept`` is a lead the lender
  holds whose answer the platform lost.
* ``{"kind": "ping", "slug", "ping_id", "t", "answer"}``.
* ``{"kind": "webhook", "slug", "webhook_id", "type", "t"}``.
* ``{"kind": "postback", "slug", "lead_id", "event_id", "type", "duplicate", "attempt",
  "status", "t"}``: one per HTTP attempt (``status`` null: no answer), and
  ``{"kind": "postback_done", ..., "delivered": bool}`` once per event delivery.

Standard library only, like the rest of the simulator.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any, TextIO

__all__ = ["Journal", "read_journal"]


class Journal:
    """Append JSON lines to ``path`` (None: a journal that keeps nothing). Thread-safe;
    every line is flushed at once, so a reader sees what happened up to now."""

    def __init__(self, path: str | Path | None) -> None:
        self._lock = threading.Lock()
        self._file: TextIO | None = None
        if path is not None:
            self._file = Path(path).open("a", encoding="utf-8")  # noqa: SIM115 - kept open

    def write(self, kind: str, **fields: Any) -> None:
        if self._file is None:
            return
        line = json.dumps({"kind": kind, "t": time.time(), **fields}, separators=(",", ":"))
        with self._lock:
            if self._file is not None:
                self._file.write(line + "\n")
                self._file.flush()

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None


def read_journal(path: str | Path) -> list[dict[str, Any]]:
    """Every complete record in ``path`` (a line being written at the moment is skipped)."""
    records: list[dict[str, Any]] = []
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        return records
    for line in text.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict):
            records.append(record)
    return records
