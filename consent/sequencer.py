"""The consent ledger's one sequencer: pending entries become leaves of the Merkle tree.

``ledger.append`` only INSERTs a pending entry (kind, time, and ``body``: canonical JSON of
at, data and kind) in the caller's transaction; it touches no shared row, so intakes never
wait on each other. ``sequence_pending`` then, behind the ``LedgerHead`` row lock (taken by
the sequencer alone, so one sequencer runs at a time), takes committed pending entries in
arrival order (``id``), gives them the next seq numbers (gapless: from the head's size,
advanced in the same transaction), and writes each one's canonical JSON (``body`` with
``"seq"`` added: it sorts last) and leaf hash, ``BATCH`` entries per transaction.

An entry's position is therefore its sequencing order, not its commit or arrival order; a
transaction that rolls back leaves nothing behind, and one that commits late is taken by
the next run. Runs come from Celery beat every second (``consent.tasks.sequence_ledger``;
a run that finds another one busy returns at once), from ``make_checkpoint`` (so a checkpoint
covers everything committed before it), and in eager mode (development, tests) right after
each appending transaction commits. The delay before an entry has its seq is thus about a
second, and before a signed checkpoint covers it, the checkpoint interval.
"""

from __future__ import annotations

from django.db import connection, transaction
from django.db.backends.utils import CursorWrapper
from django.db.models import F

from consent.merkle import leaf_hash
from consent.models import LedgerEntry, LedgerHead

BATCH = 5_000  # entries per sequencing transaction: one read and one write round trip
_STAGE = "consent_ledger_sequencing"  # a session's temporary table (PostgreSQL)


def sequence_pending(*, wait: bool = True, batch: int = BATCH) -> int:
    """Sequence every entry committed and pending; returns how many it sequenced.

    ``wait=False`` returns 0 at once when another sequencer holds the head (the beat task:
    that one will take these entries). Each batch commits on its own, so a long backlog
    never holds the head for long, and a crash loses at most one uncommitted batch. Call
    it outside any transaction: inside one, the head stays locked until that one commits.
    """
    total = 0
    while True:
        done = _sequence_batch(wait=wait, batch=batch)
        if done is None:
            return total
        total += done
        if done < batch:
            return total


def pending_count() -> int:
    """Committed entries not sequenced yet (visible to this connection)."""
    return LedgerEntry.objects.filter(seq__isnull=True).count()


def _sequence_batch(*, wait: bool, batch: int) -> int | None:
    """One transaction: lock the head, sequence up to ``batch`` entries, advance the head.
    None when another sequencer holds the head and ``wait`` is False."""
    _ensure_head()
    with transaction.atomic():
        head = (
            LedgerHead.objects.select_for_update(skip_locked=not wait)
            .filter(id=1)
            .values_list("size", flat=True)
            .first()
        )
        if head is None:
            return None
        # Read after the lock: what committed before it, in arrival order.
        rows = list(
            LedgerEntry.objects.filter(seq__isnull=True)
            .order_by("id")
            .values_list("id", "body")[:batch]
        )
        if not rows:
            return 0
        _write(_assign(rows, first_seq=head))
        LedgerHead.objects.filter(id=1).update(size=F("size") + len(rows))
        return len(rows)


def _ensure_head() -> None:
    if not LedgerHead.objects.filter(id=1).exists():
        LedgerHead.objects.get_or_create(id=1)  # a concurrent creator wins; both fine


_Assigned = tuple[list[int], list[int], list[str], list[str]]  # ids, seqs, canonicals, hashes


def _assign(rows: list[tuple[int, str | None]], *, first_seq: int) -> _Assigned:
    """Seq numbers, canonical JSON and leaf hashes for pending rows, in the order given.

    Canonical JSON sorts keys and ``"seq"`` sorts after ``"at"``, ``"data"`` and ``"kind"``,
    so the full document is the pending body with ``,"seq":N`` before its closing brace:
    the content is never re-parsed or re-encoded, so it cannot drift.
    """
    ids, seqs, canonicals, hashes = [], [], [], []
    for offset, (entry_id, body) in enumerate(rows):
        if body is None or not body.endswith("}"):
            # The check constraint forbids it; refuse rather than invent content.
            raise RuntimeError(f"pending ledger entry id {entry_id} has no body")
        seq = first_seq + offset
        canonical = f'{body[:-1]},"seq":{seq}}}'
        ids.append(entry_id)
        seqs.append(seq)
        canonicals.append(canonical)
        hashes.append(leaf_hash(canonical.encode()).hex())
    return ids, seqs, canonicals, hashes


def _write(assigned: _Assigned) -> None:
    ids, seqs, canonicals, hashes = assigned
    table = connection.ops.quote_name(LedgerEntry._meta.db_table)
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            _write_postgresql(cursor, table, assigned)
        else:
            cursor.executemany(
                f"UPDATE {table} SET seq = %s, canonical = %s, leaf_hash = %s, "  # noqa: S608
                "body = NULL WHERE id = %s AND seq IS NULL",
                list(zip(seqs, canonicals, hashes, ids, strict=True)),
            )
        updated = cursor.rowcount
    if updated != len(ids):
        # Only this sequencer (holding the head) assigns seq: anything else is tampering.
        raise RuntimeError(f"sequenced {updated} of {len(ids)} pending ledger entries")


def _write_postgresql(cursor: CursorWrapper, table: str, assigned: _Assigned) -> None:
    """COPY the batch into a session's staging table, then one UPDATE joins it in (and
    empties it). Passing a few megabytes of text as query parameters is 2-3 times slower:
    Django binds them client-side, escaping every character in Python."""
    cursor.execute(
        f"CREATE TEMP TABLE IF NOT EXISTS {_STAGE} "
        "(id bigint, seq bigint, canonical text, leaf_hash text) ON COMMIT DELETE ROWS"
    )
    with cursor.cursor.copy(f"COPY {_STAGE} (id, seq, canonical, leaf_hash) FROM STDIN") as copy:
        for row in zip(*assigned, strict=True):
            copy.write_row(row)
    cursor.execute(
        f"WITH v AS (DELETE FROM {_STAGE} RETURNING *) "  # noqa: S608
        f"UPDATE {table} AS e SET seq = v.seq, canonical = v.canonical, "
        "leaf_hash = v.leaf_hash, body = NULL FROM v WHERE e.id = v.id AND e.seq IS NULL"
    )
