"""The one helper for race tests: start calls together, each in its own thread and connection.

Races need a real database (PostgreSQL: SQLite serialises writes), so the tests that use it
carry ``pytest.mark.postgres``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

from django.db import connection

T = TypeVar("T")


def run_concurrently(*calls: Callable[[], T]) -> list[T | BaseException]:
    """Start every call at the same moment, each in its own thread; each result is the call's
    return value or the exception it raised, in the order of ``calls``. Each thread closes its
    own database connection."""
    barrier = threading.Barrier(len(calls))
    results: list[T | BaseException] = [RuntimeError("did not run")] * len(calls)

    def run(index: int, call: Callable[[], T]) -> None:
        try:
            barrier.wait(timeout=10)
            results[index] = call()
        except BaseException as exc:  # reported to the test through the results
            results[index] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i, call)) for i, call in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads), "a thread hung"
    return results
