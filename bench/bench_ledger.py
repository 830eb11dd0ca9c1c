"""The consent ledger at scale, on the PostgreSQL named by DATABASE_URL (a dedicated bench
database: this benchmark TRUNCATEs and refills the ledger tables).

* ``ledger_append_vs_insert``: entries/s through ``ledger.append`` from N concurrent
  connections (N = 1, 4, 16; one transaction per entry, as intake does; no broker-less
  eager sequencing: as in production, entries stay pending) against INSERTing the very same
  rows into a plain table of the same shape (no trigger), one transaction per row, the same N
  connections, same run. The value is the ratio at 16 connections; the goal is that appends
  scale with connections as a bare insert does, since they share no lock.
* ``ledger_lock_cap``: the ledger's only serial section is now the sequencer; entries/s it
  sequences (batches of ``consent.sequencer.BATCH``, PostgreSQL guard trigger on) from a
  backlog of ``N_SEQUENCE`` pending entries. Goal >= 1,000 (the design's peak referral rate;
  an intake appends one entry, each delivery one more). The baseline is the 16-connection
  append rate measured above: the sequencer must outrun the appenders.
* ``ledger_verify_vs_read``: ``verify_ledger`` over 1,000,000 entries and 6 signed
  checkpoints against reading the same rows through the same driver (psycopg 3, one
  server-side cursor, the same fetch size) and doing nothing with them. Goal <= 2.
* ``inclusion_proof_hashes_at_1m``: the longest inclusion proof at n = 1e3 .. 1e6 (every
  proof verified against the tree root); the baseline is ceil(log2 n). Also the time to
  build one proof at 1M through ``consent.proofs`` (first request in a process, then warm).
"""

from __future__ import annotations

import base64
import math
import random
import statistics
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from celery import current_app
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.conf import settings
from django.db import connection, transaction

N_VERIFY = 1_000_000
N_APPEND = 3_200  # entries per connection count, shared among the connections
CONNECTIONS = (1, 4, 16)
N_SEQUENCE = 50_000
CHECKPOINT_SIZES = (1_000, 10_000, 100_000, 250_000, 500_000, N_VERIFY)
PROOF_SIZES = (1_000, 10_000, 100_000, N_VERIFY)
ROUNDS = 3
FETCH = 50_000
RAW_TABLE = "bench_ledger_raw_insert"
EPOCH = datetime(2026, 1, 1, tzinfo=UTC)


def _data(rng: random.Random, i: int) -> tuple[str, dict[str, Any]]:
    """Entry data shaped like the real kinds (ids and hashes only, as in production)."""
    receipt, subject = str(uuid.UUID(int=rng.getrandbits(128))), str(uuid.UUID(int=i + 1))
    roll = i % 10
    if roll < 4:
        return "consent.granted", {
            "receipt_id": receipt,
            "subject_id": subject,
            "source_id": "5c1f7d0e-0000-4000-8000-000000000001",
            "text_version": "2026-01-zh-CN",
            "text_sha256": f"{rng.getrandbits(256):064x}",
            "scope": "matched_partners",
            "recipients": [],
            "purposes": ["loan_referral"],
            "data_categories": ["identity", "contact", "financial", "employment"],
            "method": "checkbox",
            "channel": "app",
            "collected_at": (EPOCH + timedelta(seconds=i)).isoformat(),
            "expires_at": (EPOCH + timedelta(days=365, seconds=i)).isoformat(),
            "evidence_sha256": f"{rng.getrandbits(256):064x}",
        }
    if roll < 9:
        return "data.disclosed", {
            "disclosure_id": str(uuid.UUID(int=rng.getrandbits(128))),
            "receipt_id": receipt,
            "subject_id": subject,
            "partner_id": str(uuid.UUID(int=rng.getrandbits(128))),
            "fields": ["full_name", "phone", "national_id", "birth_date", "monthly_income"],
            "purpose": "loan_referral",
            "reference": f"lead:{uuid.UUID(int=rng.getrandbits(128))}",
        }
    return "consent.withdrawn", {
        "receipt_id": receipt,
        "subject_id": subject,
        "channel": "api",
        "withdrawn_at": (EPOCH + timedelta(seconds=i)).isoformat(),
    }


def _truncate() -> None:
    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE consent_ledgerentry, consent_checkpoint, consent_ledgerhead")
    from consent import proofs

    proofs.clear_cache()


# --- Append from N connections, and the sequencer ------------------------------------------


def _on_threads(connections_: int, work: Callable[[int], None]) -> float:
    """Run ``work(i)`` on ``connections_`` threads (a database connection each), started
    together; returns the wall time from the start to the last one finishing."""
    start = threading.Barrier(connections_ + 1)
    failures: list[BaseException] = []

    def run(index: int) -> None:
        try:
            connection.ensure_connection()
            start.wait(timeout=30)
            work(index)
        except BaseException as exc:  # reported below, in the main thread
            failures.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(connections_)]
    for thread in threads:
        thread.start()
    start.wait(timeout=30)
    began = time.perf_counter()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - began
    if failures:
        raise failures[0]
    return elapsed


def _append_rate(connections_: int, payloads: list[tuple[str, dict[str, Any]]]) -> float:
    from consent import ledger

    share = len(payloads) // connections_

    def work(index: int) -> None:
        for kind, data in payloads[index * share : (index + 1) * share]:
            with transaction.atomic():
                ledger.append(kind=kind, data=data)

    return share * connections_ / _on_threads(connections_, work)


def _insert_rate(connections_: int, rows: list[tuple[str, str, datetime]]) -> float:
    share = len(rows) // connections_
    insert = f"INSERT INTO {RAW_TABLE} (kind, body, created_at) VALUES (%s, %s, %s)"  # noqa: S608

    def work(index: int) -> None:
        for row in rows[index * share : (index + 1) * share]:
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.execute(insert, row)

    return share * connections_ / _on_threads(connections_, work)


def _bench_append() -> dict[str, Any]:
    """Appends vs bare inserts by connections; leaves every appended entry pending."""
    from consent import ledger

    _truncate()
    rng = random.Random(7)
    payloads = [_data(rng, i) for i in range(N_APPEND)]
    at = datetime.now(UTC)
    rows = [
        (kind, ledger.canonical_json({"kind": kind, "at": at.isoformat(), "data": data}), at)
        for kind, data in payloads
    ]
    with connection.cursor() as cursor:
        cursor.execute(f"DROP TABLE IF EXISTS {RAW_TABLE}")
        cursor.execute(f"CREATE TABLE {RAW_TABLE} (LIKE consent_ledgerentry INCLUDING ALL)")
    by_n: dict[str, dict[str, float]] = {}
    for n in CONNECTIONS:
        append_rate, insert_rate = _append_rate(n, payloads), _insert_rate(n, rows)
        by_n[str(n)] = {
            "append_per_s": round(append_rate),
            "insert_per_s": round(insert_rate),
            "ratio": round(append_rate / insert_rate, 3),
        }
        print(f"{n:>2} connections: append {append_rate:.0f}/s, bare INSERT {insert_rate:.0f}/s")
    with connection.cursor() as cursor:
        cursor.execute(f"DROP TABLE {RAW_TABLE}")
    top = by_n[str(CONNECTIONS[-1])]
    return {
        "ledger_append_vs_insert": {
            "value": top["ratio"],
            "baseline": "bare INSERT of the same rows into a table of the same shape, one "
            "transaction each, same connections: "
            + ", ".join(
                f"{n} conn {v['append_per_s']}/{v['insert_per_s']} per s" for n, v in by_n.items()
            ),
            "goal": "",
            "by_connections": by_n,
        }
    }


def _load_pending(count: int) -> None:
    """COPY ``count`` pending entries in (as appends leave them), in one transaction."""
    from consent import ledger

    rng = random.Random(5)
    with (
        transaction.atomic(),
        connection.cursor() as cursor,
        cursor.cursor.copy("COPY consent_ledgerentry (kind, body, created_at) FROM STDIN") as copy,
    ):
        for i in range(count):
            kind, data = _data(rng, i)
            at = EPOCH + timedelta(milliseconds=i)
            copy.write_row(
                (
                    kind,
                    ledger.canonical_json({"kind": kind, "at": at.isoformat(), "data": data}),
                    at,
                )
            )
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE consent_ledgerentry")


def _bench_sequencer(append_rate: int) -> dict[str, Any]:
    from consent import ledger, sequencer

    already = sequencer.pending_count()  # what the append benchmark left
    _load_pending(N_SEQUENCE - already)
    began = time.perf_counter()
    done = sequencer.sequence_pending()
    seconds = time.perf_counter() - began
    assert done == N_SEQUENCE, (done, N_SEQUENCE)
    report = ledger.verify_ledger()
    assert report.ok and report.entries_checked == N_SEQUENCE, report.problems[:5]
    rate = done / seconds
    print(
        f"sequencer: {done} entries in {seconds:.2f} s = {rate:.0f}/s "
        f"(batches of {sequencer.BATCH}); appends from {CONNECTIONS[-1]} connections: "
        f"{append_rate}/s"
    )
    return {
        "ledger_lock_cap": {
            "value": round(rate),
            "baseline": f"entries/s the sequencer (the ledger's one serial section) assigns "
            f"from a backlog of {N_SEQUENCE}, batches of {sequencer.BATCH}, guard trigger on; "
            f"appends from {CONNECTIONS[-1]} connections in the same run: {append_rate}/s",
            "goal": ">= 1000",
            "seconds": round(seconds, 2),
        }
    }


# --- One million entries -------------------------------------------------------------------


def _load_million() -> dict[int, bytes]:
    """COPY 1M canonical entries in; sign checkpoints at CHECKPOINT_SIZES. Returns roots."""
    from consent import ledger
    from consent.merkle import MerkleAccumulator, leaf_hash
    from consent.models import Checkpoint, LedgerHead

    _truncate()
    signer = Ed25519PrivateKey.from_private_bytes(base64.b64decode(settings.LEDGER_SIGNING_KEY))
    rng = random.Random(11)
    accumulator = MerkleAccumulator()
    roots: dict[int, bytes] = {}
    began = time.perf_counter()
    with transaction.atomic(), connection.cursor() as cursor:
        # Entries are written already sequenced here, which the guard trigger refuses: the
        # bench database's owner switches triggers off for this transaction.
        cursor.execute("SET LOCAL session_replication_role = replica")
        raw = cursor.cursor  # the psycopg cursor, for COPY
        with raw.copy(
            "COPY consent_ledgerentry (seq, kind, canonical, leaf_hash, created_at) FROM STDIN"
        ) as copy:
            for seq in range(N_VERIFY):
                kind, data = _data(rng, seq)
                at = EPOCH + timedelta(milliseconds=seq)
                canonical = ledger.canonical_json(
                    {"seq": seq, "kind": kind, "at": at.isoformat(), "data": data}
                )
                hashed = leaf_hash(canonical.encode())
                accumulator.append(hashed)
                copy.write_row((seq, kind, canonical, hashed.hex(), at))
                if accumulator.size in CHECKPOINT_SIZES:
                    roots[accumulator.size] = accumulator.root()
        LedgerHead.objects.update_or_create(id=1, defaults={"size": N_VERIFY})
        for size, root in roots.items():
            signed_at = EPOCH + timedelta(days=1, seconds=size)
            body = ledger.checkpoint_body(size, root.hex(), signed_at)
            Checkpoint.objects.create(
                tree_size=size,
                root_hash=root.hex(),
                signed_at=signed_at,
                key_id=ledger.public_key_id(),
                signature=base64.b64encode(signer.sign(body)).decode(),
            )
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE consent_ledgerentry")
    print(f"loaded {N_VERIFY} entries in {time.perf_counter() - began:.1f} s")
    return roots


def _read_all() -> int:
    """The baseline: the verifier's query, through the same driver and cursor, no work."""
    count = 0
    with transaction.atomic(), connection.chunked_cursor() as cursor:
        cursor.execute(
            "SELECT seq, kind, COALESCE(canonical, ''), COALESCE(leaf_hash, '') "
            "FROM consent_ledgerentry WHERE seq IS NOT NULL ORDER BY seq"
        )
        while rows := cursor.fetchmany(FETCH):
            for _row in rows:
                count += 1
    return count


def _bench_verify() -> dict[str, Any]:
    from consent import ledger

    reads, verifies = [], []
    for _ in range(ROUNDS):
        began = time.perf_counter()
        assert _read_all() == N_VERIFY
        reads.append(time.perf_counter() - began)
        began = time.perf_counter()
        report = ledger.verify_ledger()
        verifies.append(time.perf_counter() - began)
        assert report.ok, report.problems[:5]
        assert report.entries_checked == N_VERIFY
        assert report.checkpoints_checked == len(CHECKPOINT_SIZES)
    read, verify = statistics.median(reads), statistics.median(verifies)
    print(f"read 1M rows: {read:.2f} s; verify_ledger 1M entries: {verify:.2f} s")
    return {
        "ledger_verify_vs_read": {
            "value": round(verify / read, 3),
            "baseline": f"reading the same {N_VERIFY} rows through psycopg 3 (server-side "
            f"cursor, {FETCH} rows per fetch): {read:.2f} s; verify_ledger {verify:.2f} s "
            f"(median of {ROUNDS})",
            "goal": "<= 2",
            "verify_seconds": round(verify, 2),
            "read_seconds": round(read, 2),
        }
    }


def _bench_proofs(roots: dict[int, bytes]) -> dict[str, Any]:
    from consent import proofs
    from consent.merkle import verify_inclusion
    from consent.models import LedgerEntry

    rng = random.Random(3)
    longest: dict[int, int] = {}
    for n in PROOF_SIZES:
        hasher = proofs.ledger_hasher()
        root = proofs.tree_root(hasher, n)
        assert n not in roots or root == roots[n]
        indices = sorted({0, n // 3, n // 2, n - 2, n - 1, *rng.sample(range(n), 20)})
        leaves = dict(LedgerEntry.objects.filter(seq__in=indices).values_list("seq", "leaf_hash"))
        found = 0
        for proof in proofs.inclusion_proofs(hasher, indices, n):
            assert verify_inclusion(
                leaf_hash=bytes.fromhex(leaves[proof.leaf_index]),
                index=proof.leaf_index,
                tree_size=n,
                proof=proof.hashes,
                root=root,
            )
            found = max(found, len(proof.hashes))
        longest[n] = found
        assert found <= math.ceil(math.log2(n)), (n, found)
    # Time one proof at 1M: the first in a fresh process (cache cold), then warm ones.
    proofs.clear_cache()
    began = time.perf_counter()
    proofs.entry_inclusion_proofs(seqs=[N_VERIFY // 3], tree_size=N_VERIFY)
    cold_ms = (time.perf_counter() - began) * 1000
    warm = []
    for seq in rng.sample(range(N_VERIFY), 50):
        began = time.perf_counter()
        proofs.entry_inclusion_proofs(seqs=[seq], tree_size=N_VERIFY)
        warm.append((time.perf_counter() - began) * 1000)
    warm_ms = statistics.median(warm)
    print(
        "longest inclusion proof: "
        + ", ".join(f"n={n}: {h} (log2 {math.ceil(math.log2(n))})" for n, h in longest.items())
        + f"; one proof at 1M: {cold_ms:.0f} ms cold, {warm_ms:.1f} ms warm"
    )
    return {
        "inclusion_proof_hashes_at_1m": {
            "value": longest[N_VERIFY],
            "baseline": f"ceil(log2 n) = {math.ceil(math.log2(N_VERIFY))}; by n: "
            + ", ".join(f"{n}: {h}/{math.ceil(math.log2(n))}" for n, h in longest.items()),
            "goal": f"<= {math.ceil(math.log2(N_VERIFY))}",
            "by_n": {str(n): h for n, h in longest.items()},
        },
        "inclusion_proof_ms_at_1m": {
            "value": round(warm_ms, 1),
            "baseline": f"first proof in a process (subtree cache cold, streams every leaf "
            f"hash once): {cold_ms:.0f} ms; then median of 50 warm proofs",
            "goal": "",
            "cold_ms": round(cold_ms),
        },
    }


def run() -> dict[str, dict[str, Any]]:
    eager = current_app.conf.task_always_eager
    current_app.conf.task_always_eager = False  # as with a broker: appends stay pending
    try:
        results = _bench_append()
        append_rate = results["ledger_append_vs_insert"]["by_connections"][str(CONNECTIONS[-1])]
        results.update(_bench_sequencer(append_rate["append_per_s"]))
    finally:
        current_app.conf.task_always_eager = eager
    roots = _load_million()
    results.update(_bench_verify())
    results.update(_bench_proofs(roots))
    _truncate()  # leave the bench database's ledger empty for the other benchmarks
    return results
