"""The ledger is appended pending and sequenced by one sequencer: appends never wait on each
other, sequence numbers come out gapless and unique, rolled-back work leaves nothing, and
on PostgreSQL nothing but the one-time sequencing can change an entry."""

from __future__ import annotations

import hashlib
import json
import random
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from functools import partial
from typing import Any

import pytest
from celery import current_app
from django.db import DatabaseError, connection, transaction
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consent import ledger, sequencer, tasks
from consent.models import LedgerEntry, LedgerHead
from tests.concurrency import run_concurrently


class _Rollback(Exception):
    """Raised inside a transaction to roll it back."""


def _append_committed(kind: str = "test.event", **data: Any) -> LedgerEntry:
    with transaction.atomic():
        return ledger.append(kind=kind, data=data)


def _ledger_data() -> list[dict[str, Any]]:
    """The data of every sequenced entry, in seq order."""
    rows = LedgerEntry.objects.filter(seq__isnull=False).order_by("seq")
    return [json.loads(c)["data"] for c in rows.values_list("canonical", flat=True)]


def _assert_gapless_and_verifying(expected_size: int) -> None:
    seqs = list(LedgerEntry.objects.order_by("seq").values_list("seq", flat=True))
    assert seqs == list(range(expected_size))
    assert LedgerHead.objects.get(id=1).size == expected_size
    report = ledger.verify_ledger()
    assert report.ok, report.problems
    assert (report.entries_checked, report.pending) == (expected_size, 0)


@pytest.fixture
def broker_mode() -> Iterator[None]:
    """As in production: a broker, no eager tasks; beat's sequencer run is called by hand."""
    previous = current_app.conf.task_always_eager
    current_app.conf.task_always_eager = False
    yield
    current_app.conf.task_always_eager = previous


# --- Pending, then sequenced --------------------------------------------------------------


def test_append_writes_a_pending_entry_that_the_sequencer_completes(
    db: None, broker_mode: None
) -> None:
    at = datetime(2026, 12, 1, 8, 30, tzinfo=UTC)
    entry = _append_committed("consent.granted", receipt_id="r-1", note="中文")
    with transaction.atomic():
        timed = ledger.append(kind="test.event", data={"n": 2}, at=at)

    assert (entry.seq, entry.canonical, entry.leaf_hash) == (None, None, None)
    assert sequencer.pending_count() == 2
    assert sequencer.sequence_pending() == 2

    entry.refresh_from_db()
    timed.refresh_from_db()
    assert (entry.seq, timed.seq, entry.body, timed.body) == (0, 1, None, None)
    assert timed.canonical == ledger.canonical_json(
        {"seq": 1, "kind": "test.event", "at": at.isoformat(), "data": {"n": 2}}
    )
    assert json.loads(entry.canonical or "")["data"] == {"receipt_id": "r-1", "note": "中文"}
    for sequenced in (entry, timed):
        canonical = (sequenced.canonical or "").encode()
        assert sequenced.leaf_hash == hashlib.sha256(b"\x00" + canonical).hexdigest()
    assert sequencer.sequence_pending() == 0
    _assert_gapless_and_verifying(2)


def test_one_transactions_entries_keep_their_order_and_a_rollback_leaves_no_gap(
    db: None, broker_mode: None
) -> None:
    with transaction.atomic():
        for n in range(3):
            ledger.append(kind="test.event", data={"n": n})
        try:
            with transaction.atomic():
                ledger.append(kind="test.event", data={"n": "rolled back"})
                raise _Rollback
        except _Rollback:
            pass
        ledger.append(kind="test.event", data={"n": 3})

    sequencer.sequence_pending()

    assert _ledger_data() == [{"n": 0}, {"n": 1}, {"n": 2}, {"n": 3}]
    _assert_gapless_and_verifying(4)


def test_the_sequencer_works_in_batches(db: None, broker_mode: None) -> None:
    for n in range(10):
        _append_committed(n=n)

    assert sequencer.sequence_pending(batch=3) == 10

    assert _ledger_data() == [{"n": n} for n in range(10)]
    _assert_gapless_and_verifying(10)


def test_a_checkpoint_sequences_what_is_pending_and_covers_it(db: None, broker_mode: None) -> None:
    for n in range(5):
        _append_committed(n=n)

    checkpoint = ledger.make_checkpoint()

    assert checkpoint.tree_size == 5
    assert sequencer.pending_count() == 0
    report = ledger.verify_ledger()
    assert report.ok and report.checkpoints_checked == 1


def test_beats_task_sequences_what_was_committed(db: None, broker_mode: None) -> None:
    _append_committed(n=1)
    _append_committed(n=2)

    assert sequencer.pending_count() == 2  # nothing sequences on commit with a broker
    assert tasks.sequence_ledger() == 2
    assert "consent.tasks.sequence_ledger" in {
        entry["task"] for entry in current_app.conf.beat_schedule.values()
    }


def test_in_eager_mode_an_entry_is_sequenced_once_its_transaction_commits(
    transactional_db: None,
) -> None:
    with transaction.atomic():
        entry = ledger.append(kind="test.event", data={"n": 1})
        assert entry.seq is None

    entry.refresh_from_db()
    assert entry.seq == 0
    _assert_gapless_and_verifying(1)


def test_a_rolled_back_append_is_never_sequenced(transactional_db: None) -> None:
    with pytest.raises(_Rollback), transaction.atomic():
        ledger.append(kind="test.event", data={"n": "rolled back"})
        raise _Rollback
    _append_committed(n=1)

    assert _ledger_data() == [{"n": 1}]
    _assert_gapless_and_verifying(1)


# --- Any interleaving ----------------------------------------------------------------------

_STEPS = st.lists(
    st.sampled_from(["commit", "rollback", "nested", "sequence", "checkpoint"]), max_size=25
)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(steps=_STEPS, batch=st.integers(min_value=1, max_value=4))
def test_any_interleaving_of_appends_rollbacks_and_sequencing_ends_verifiable(
    db: None, broker_mode: None, steps: list[str], batch: int
) -> None:
    try:
        with transaction.atomic():  # each example starts from an empty ledger
            committed = _run_steps(steps, batch)
            sequencer.sequence_pending(batch=batch)

            assert _ledger_data() == committed
            assert not any(d["fate"] == "rolled back" for d in _ledger_data())
            if committed:
                _assert_gapless_and_verifying(len(committed))
            report = ledger.verify_ledger()
            assert report.ok, report.problems
            raise _Rollback
    except _Rollback:
        pass


def _run_steps(steps: list[str], batch: int) -> list[dict[str, Any]]:
    """Run the steps on one connection; returns the data committed, in order."""
    committed: list[dict[str, Any]] = []

    def attempt(n: int, keep: bool) -> None:
        data = {"n": n, "fate": "kept" if keep else "rolled back"}
        try:
            with transaction.atomic():
                ledger.append(kind="test.event", data=data)
                if not keep:
                    raise _Rollback
        except _Rollback:
            return
        committed.append(data)

    for n, step in enumerate(steps):
        if step in ("commit", "rollback"):
            attempt(n, keep=step == "commit")
        elif step == "nested":
            with transaction.atomic():
                attempt(n, keep=True)
                attempt(n, keep=False)
        elif step == "sequence":
            sequencer.sequence_pending(batch=batch)
        else:
            ledger.make_checkpoint()
    return committed


# --- The append-only guard (PostgreSQL) ---------------------------------------------------


def _refused(sql: str, params: list[Any]) -> str:
    """Run ``sql`` in a savepoint; returns the database's refusal (fails if it ran)."""
    with pytest.raises(DatabaseError) as refused, transaction.atomic(), connection.cursor() as c:
        c.execute(sql, params)
    return str(refused.value)


@pytest.fixture
def pending_and_sequenced(db: None, broker_mode: None) -> tuple[LedgerEntry, LedgerEntry]:
    sequenced = _append_committed(n="sequenced")
    sequencer.sequence_pending()
    pending = _append_committed(n="pending")
    sequenced.refresh_from_db()
    return pending, sequenced


@pytest.mark.postgres
def test_a_pending_entry_cannot_be_altered_or_deleted(
    pending_and_sequenced: tuple[LedgerEntry, LedgerEntry],
) -> None:
    pending, _ = pending_and_sequenced
    forged = (pending.body or "").replace('"pending"', '"forged"')

    assert "append-only" in _refused(
        "UPDATE consent_ledgerentry SET body = %s WHERE id = %s", [forged, pending.id]
    )
    assert "append-only" in _refused(
        "UPDATE consent_ledgerentry SET kind = 'other' WHERE id = %s", [pending.id]
    )
    assert "append-only" in _refused("DELETE FROM consent_ledgerentry WHERE id = %s", [pending.id])


@pytest.mark.postgres
def test_the_sequencing_step_cannot_change_the_content_or_its_hash(
    pending_and_sequenced: tuple[LedgerEntry, LedgerEntry],
) -> None:
    pending, _ = pending_and_sequenced
    body = pending.body or ""
    honest = f'{body[:-1]},"seq":1}}'
    forged = honest.replace('"pending"', '"forged"')

    def leaf(text: str) -> str:
        return hashlib.sha256(b"\x00" + text.encode()).hexdigest()

    sequence = (
        "UPDATE consent_ledgerentry SET seq = %s, canonical = %s, leaf_hash = %s, body = NULL "
        "WHERE id = %s"
    )
    assert "append-only" in _refused(sequence, [1, forged, leaf(forged), pending.id])
    assert "append-only" in _refused(sequence, [1, honest, leaf(forged), pending.id])
    assert "append-only" in _refused(sequence, [7, honest, leaf(honest), pending.id])
    # The honest assignment is exactly what the trigger lets through, once.
    with connection.cursor() as cursor:
        cursor.execute(sequence, [1, honest, leaf(honest), pending.id])
    assert "append-only" in _refused(sequence, [1, honest, leaf(honest), pending.id])


@pytest.mark.postgres
def test_a_sequenced_entry_cannot_be_altered_resequenced_or_deleted(
    pending_and_sequenced: tuple[LedgerEntry, LedgerEntry],
) -> None:
    _, entry = pending_and_sequenced
    canonical = entry.canonical or ""
    tampered = canonical.replace('"sequenced"', '"tampered"')

    assert "append-only" in _refused(
        "UPDATE consent_ledgerentry SET canonical = %s WHERE id = %s", [tampered, entry.id]
    )
    assert "append-only" in _refused(
        "UPDATE consent_ledgerentry SET seq = 5 WHERE id = %s", [entry.id]
    )
    assert "append-only" in _refused(
        "UPDATE consent_ledgerentry SET seq = NULL, canonical = NULL, leaf_hash = NULL, "
        "body = %s WHERE id = %s",
        [canonical, entry.id],
    )
    assert "append-only" in _refused("DELETE FROM consent_ledgerentry WHERE id = %s", [entry.id])
    entry.refresh_from_db()
    assert (entry.seq, entry.canonical) == (0, canonical)


@pytest.mark.postgres
def test_an_entry_cannot_be_inserted_already_sequenced_and_the_head_never_shrinks(
    pending_and_sequenced: tuple[LedgerEntry, LedgerEntry],
) -> None:
    canonical = ledger.canonical_json({"seq": 2, "kind": "x", "at": "2026", "data": {}})
    leaf = hashlib.sha256(b"\x00" + canonical.encode()).hexdigest()

    assert "only the sequencer assigns seq" in _refused(
        "INSERT INTO consent_ledgerentry (seq, kind, canonical, leaf_hash, created_at) "
        "VALUES (2, 'x', %s, %s, now())",
        [canonical, leaf],
    )
    assert "only grows" in _refused("UPDATE consent_ledgerhead SET size = size - 1", [])
    assert "only grows" in _refused("DELETE FROM consent_ledgerhead", [])


# --- Concurrency (PostgreSQL) ------------------------------------------------------------


def _append_in_open_transaction(worker: int, both_appended: threading.Barrier) -> int | None:
    """Append, then wait with the transaction still open until the other one appended too.
    A shared lock taken by append would make one of them wait past its lock_timeout."""
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL lock_timeout = '2s'")
        entry = ledger.append(kind="test.event", data={"worker": worker})
        both_appended.wait(timeout=10)
        return entry.seq


@pytest.mark.postgres
def test_two_open_transactions_append_without_waiting_for_each_other(
    transactional_db: None,
) -> None:
    both_appended = threading.Barrier(2)

    results = run_concurrently(
        *(partial(_append_in_open_transaction, w, both_appended) for w in range(2))
    )

    assert results == [None, None]  # both appended and committed; pending until sequenced
    sequencer.sequence_pending()
    assert sorted(d["worker"] for d in _ledger_data()) == [0, 1]
    _assert_gapless_and_verifying(2)


@pytest.mark.postgres
def test_appends_do_not_wait_for_a_running_sequencer(
    transactional_db: None, broker_mode: None
) -> None:
    _append_committed(n=0)
    LedgerHead.objects.get_or_create(id=1)
    holding, release = threading.Event(), threading.Event()

    def sequencer_holding_the_head() -> None:
        with transaction.atomic():
            LedgerHead.objects.select_for_update().get(id=1)
            holding.set()
            release.wait(timeout=10)

    def appender() -> float:
        holding.wait(timeout=10)
        began = time.monotonic()
        with transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute("SET LOCAL lock_timeout = '1s'")
            ledger.append(kind="test.event", data={"n": 1})
        elapsed = time.monotonic() - began
        # A second sequencer does not wait either: the beat task returns at once.
        skipped = sequencer.sequence_pending(wait=False)
        release.set()
        assert skipped == 0
        return elapsed

    held, took = run_concurrently(sequencer_holding_the_head, appender)

    assert held is None
    assert isinstance(took, float) and took < 1.0
    sequencer.sequence_pending()
    _assert_gapless_and_verifying(2)


@pytest.mark.postgres
def test_concurrent_appends_rollbacks_and_sequencers_end_gapless_and_verifying(
    transactional_db: None, broker_mode: None
) -> None:
    workers, per_worker = 6, 30
    appending = threading.Event()
    appending.set()

    def appender(worker: int) -> list[dict[str, Any]]:
        rng = random.Random(worker)
        kept = []
        for n in range(per_worker):
            data = {"worker": worker, "n": n, "fate": "kept"}
            try:
                with transaction.atomic():
                    ledger.append(kind="test.event", data=data)
                    if rng.random() < 0.25:
                        raise _Rollback
            except _Rollback:
                continue
            kept.append(data)
        return kept

    def sequencer_loop() -> int:
        runs = 0
        while appending.is_set():
            sequencer.sequence_pending(wait=False, batch=7)
            runs += 1
        return runs

    calls: list[Callable[[], Any]] = [partial(appender, w) for w in range(workers)]

    def appenders_then_stop() -> list[Any]:
        try:
            return run_concurrently(*calls)
        finally:
            appending.clear()

    runs, appended = run_concurrently(sequencer_loop, appenders_then_stop)

    assert isinstance(appended, list)
    assert not [r for r in appended if isinstance(r, BaseException)]
    committed = [data for kept in appended for data in kept]
    assert isinstance(runs, int) and runs > 0
    sequencer.sequence_pending()
    in_ledger = _ledger_data()
    key = lambda d: (d["worker"], d["n"])  # noqa: E731
    assert sorted(in_ledger, key=key) == sorted(committed, key=key)
    assert all(d["fate"] == "kept" for d in in_ledger)
    _assert_gapless_and_verifying(len(committed))
    assert ledger.make_checkpoint().tree_size == len(committed)
    assert ledger.verify_ledger().ok
