"""The tamper-evident consent ledger.

Every consent event (granted, withdrawn, disclosed, erased, ...) is appended as one entry:
a canonical JSON document (sorted keys, no whitespace, UTF-8) that carries its own sequence
number, kind, time and data, never personal data. Entries are the leaves of a Merkle tree
in the manner of Certificate Transparency (RFC 9162): leaf hash = SHA-256(0x00 || entry).

Appending does not serialise the platform. As in transparency logs (Trillian, Tessera),
``append`` writes the entry *pending* (an INSERT of kind, time and content, no lock on any
shared row) inside the caller's transaction, and one sequencer (``consent.sequencer``) later
takes committed pending entries in batches, gives them gapless sequence numbers, writes
their canonical JSON and leaf hashes, and advances ``LedgerHead``. Beat runs it every
second, so an entry has its seq about a second after its transaction commits (in eager
mode, development and tests, right after the commit); a signed checkpoint covers it at the
next checkpoint, which sequences what is pending first. Nothing may rely on an entry's seq
right after ``append``: it is None until then. A transaction that rolls back leaves no
entry and no gap.

Checkpoints are signed statements ``(tree size, root hash, time)`` made with an Ed25519 key.
Whoever holds a checkpoint can check that an entry is in the tree (inclusion proof) and that
a later tree extends an earlier one (consistency proof) without trusting the database.
``verify_ledger`` recomputes every sequenced leaf and every checkpointed root and names the
first entry that does not match; pending entries are counted, not judged (they carry no
hash yet). On PostgreSQL a trigger refuses any change to an entry other than its one-time
sequencing, and any deletion (consent migration 0006).
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from celery import current_app
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from consent import sequencer
from consent.merkle import EMPTY_ROOT, HASH_SIZE, MerkleAccumulator
from consent.models import Checkpoint, LedgerEntry, LedgerHead

_sha256 = hashlib.sha256

CHECKPOINT_ORIGIN = "decline-marketplace/consent-ledger"


def canonical_json(document: Any) -> str:
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def append(*, kind: str, data: dict[str, Any], at: datetime | None = None) -> LedgerEntry:
    """Append one entry, pending: it gets its seq, canonical JSON and leaf hash from the
    sequencer after the caller's transaction commits (``entry.seq`` is None here). Must run
    inside the transaction that makes the change, so the entry exists if and only if the
    change does. Takes no lock on any shared row."""
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("ledger.append must run inside the transaction that makes the change")
    at = at or timezone.now()
    body = canonical_json({"kind": kind, "at": at.isoformat(), "data": data})
    entry = LedgerEntry.objects.create(kind=kind, body=body, created_at=at)
    if current_app.conf.task_always_eager:
        # No beat without a broker: sequence once this commits (robust: an error leaves
        # the entry pending for the next run instead of failing the committed request).
        transaction.on_commit(sequencer.sequence_pending, robust=True)
    return entry


def with_acting_key(data: dict[str, Any], acting_key: dict[str, str] | None) -> dict[str, Any]:
    """``data`` with the API key that caused the entry, when one did: ``{"prefix": ...,
    "mode": "live" | "sandbox"}`` (``partners.key_mode.acting_key``), the key's public lookup
    prefix, never its secret. Entries written by staff, workers or commands have none."""
    if acting_key is None:
        return data
    return {**data, "api_key": {"prefix": acting_key["prefix"], "mode": acting_key["mode"]}}


# --- Signing -------------------------------------------------------------------------------


def _private_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(base64.b64decode(settings.LEDGER_SIGNING_KEY))


def public_key() -> Ed25519PublicKey:
    return _private_key().public_key()


def public_key_bytes() -> bytes:
    return public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def public_key_id() -> str:
    return hashlib.sha256(public_key_bytes()).hexdigest()


def checkpoint_body(tree_size: int, root_hash_hex: str, signed_at: datetime) -> bytes:
    """What a checkpoint signature covers, as text an auditor can rebuild by hand."""
    root_b64 = base64.b64encode(bytes.fromhex(root_hash_hex)).decode()
    return f"{CHECKPOINT_ORIGIN}\n{tree_size}\n{root_b64}\n{signed_at.isoformat()}\n".encode()


def checkpoint_document(checkpoint: Checkpoint) -> dict[str, Any]:
    """A checkpoint as auditors receive it (API and audit bundles alike), with the exact
    text its signature covers."""
    body = checkpoint_body(checkpoint.tree_size, checkpoint.root_hash, checkpoint.signed_at)
    return {
        "origin": CHECKPOINT_ORIGIN,
        "tree_size": checkpoint.tree_size,
        "root_hash": base64.b64encode(bytes.fromhex(checkpoint.root_hash)).decode(),
        "root_hash_hex": checkpoint.root_hash,
        "signed_at": checkpoint.signed_at.isoformat(),
        "algorithm": "Ed25519",
        "key_id": checkpoint.key_id,
        "signature": checkpoint.signature,
        "signed_body": body.decode(),
    }


def make_checkpoint() -> Checkpoint:
    """Sequence what is pending, then sign the tree: entries below the head's size (a
    consistent prefix: they committed with it)."""
    sequencer.sequence_pending()
    with transaction.atomic():
        head, _ = LedgerHead.objects.get_or_create(id=1)
        size = head.size
    accumulator = MerkleAccumulator()
    for hex_hash in _leaf_hashes(size):
        accumulator.append(bytes.fromhex(hex_hash))
    root_hex = accumulator.root().hex()
    signed_at = timezone.now()
    signature = _private_key().sign(checkpoint_body(size, root_hex, signed_at))
    return Checkpoint.objects.create(
        tree_size=size,
        root_hash=root_hex,
        signed_at=signed_at,
        key_id=public_key_id(),
        signature=base64.b64encode(signature).decode(),
    )


def verify_checkpoint_signature(checkpoint: Checkpoint, key: Ed25519PublicKey) -> bool:
    body = checkpoint_body(checkpoint.tree_size, checkpoint.root_hash, checkpoint.signed_at)
    try:
        key.verify(base64.b64decode(checkpoint.signature), body)
    except (InvalidSignature, ValueError):
        return False
    return True


def _leaf_hashes(size: int) -> Iterator[str]:
    rows = LedgerEntry.objects.filter(seq__lt=size).order_by("seq").values_list("leaf_hash")
    for (hex_hash,) in rows.iterator(chunk_size=20_000):
        yield hex_hash or ""  # a sequenced row always has one (check constraint)


# --- Verification --------------------------------------------------------------------------


@dataclass
class VerifyReport:
    entries_checked: int = 0
    checkpoints_checked: int = 0
    problems: list[str] = field(default_factory=list)
    first_bad_seq: int | None = None
    # Committed entries the sequencer has not reached yet: no seq or hash to check, and no
    # sign of tampering (the trigger keeps them as appended until then).
    pending: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems

    def fail(self, message: str, seq: int | None = None) -> None:
        self.problems.append(message)
        if seq is not None and self.first_bad_seq is None:
            self.first_bad_seq = seq


def _check_document(seq: int, kind: str, canonical: str, report: VerifyReport) -> None:
    """The full check of an entry's content: JSON object, its own seq and kind, canonical."""
    try:
        document = json.loads(canonical)
    except ValueError:
        report.fail(f"entry {seq}: content is not JSON", seq)
        return
    if not isinstance(document, dict):
        report.fail(f"entry {seq}: content is not a JSON object", seq)
        return
    if document.get("seq") != seq:
        report.fail(f"entry {seq}: content says it is entry {document.get('seq')}", seq)
    if document.get("kind") != kind:
        report.fail(f"entry {seq}: kind column differs from the signed content", seq)
    if canonical_json(document) != canonical:
        report.fail(f"entry {seq}: content is not in canonical form", seq)


_EntryRow = tuple[int, str, str, str]  # seq, kind, canonical JSON, stored leaf hash (hex)


def _entry_batches(chunk: int = 50_000) -> Iterator[list[_EntryRow]]:
    """Every entry in seq order through a server-side cursor, ``chunk`` rows per round trip.

    Plain driver rows (no model or queryset machinery): the verifier's cost is meant to be
    the hashing, not the reading. Call inside a transaction, so that PostgreSQL streams the
    cursor instead of materialising a WITH HOLD copy of the whole table first.
    """
    table = connection.ops.quote_name(LedgerEntry._meta.db_table)
    with connection.chunked_cursor() as cursor:
        cursor.execute(
            # COALESCE: a sequenced row stripped of its content (the check constraint
            # dropped first) is reported as not matching, not a crash.
            f"SELECT seq, kind, COALESCE(canonical, ''), COALESCE(leaf_hash, '') "  # noqa: S608
            f"FROM {table} WHERE seq IS NOT NULL ORDER BY seq"
        )
        while rows := cursor.fetchmany(chunk):
            yield rows


def _frontier_root(frontier: list[bytes]) -> bytes:
    if not frontier:
        return EMPTY_ROOT
    node = frontier[-1]
    for i in range(len(frontier) - 2, -1, -1):
        node = _sha256(b"\x01" + frontier[i] + node).digest()
    return node


def verify_ledger(
    *,
    key: Ed25519PublicKey | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> VerifyReport:
    """Recompute every sequenced leaf and every checkpointed root; report the first bad
    entry, and count the pending ones. Reads only: it never sequences. ``progress`` is
    called with (entries walked, entries the head counts) after each batch read.

    The loop is the hot path of a million-entry audit, so it avoids parsing JSON: for an
    entry covered by a signed checkpoint, the recomputed leaf hash matching the stored one,
    and the stored hashes matching the signed roots, already prove the content is exactly
    what was appended (and ``append`` wrote it canonical). What remains is to bind the row
    to its position and kind, which canonical JSON makes a string comparison: sorted keys
    put ``"kind"`` and ``"seq"`` last, so the content must end with
    ``,"kind":<kind>,"seq":<seq>}``. Anything that does not, and every entry after the last
    checkpoint (no signature covers it yet), gets the full JSON and canonical-form check.
    """
    key = key or public_key()
    report = VerifyReport()
    checkpoints = list(Checkpoint.objects.order_by("tree_size", "signed_at"))
    _check_checkpoint_signatures(checkpoints, key, report)
    signed_roots = _SignedRoots(checkpoints, report)
    with transaction.atomic():
        # Read before the entries: every entry below the head's size committed with it, so
        # fewer stored entries means deletion, even of entries no checkpoint covers yet.
        head_size = LedgerHead.objects.filter(id=1).values_list("size", flat=True).first() or 0
        size, last_seq = _verify_entries(
            signed_roots, report, progress=_counting(progress, head_size)
        )
        report.pending = sequencer.pending_count()
    report.entries_checked = size
    _report_deleted_tail(report, head_size=head_size, last_seq=last_seq)
    _report_checkpoints_beyond(report, signed_roots.unreached(), size=size)
    return report


def _check_checkpoint_signatures(
    checkpoints: list[Checkpoint], key: Ed25519PublicKey, report: VerifyReport
) -> None:
    for checkpoint in checkpoints:
        if not verify_checkpoint_signature(checkpoint, key):
            report.fail(f"checkpoint at size {checkpoint.tree_size}: signature does not verify")


class _SignedRoots:
    """The checkpoints in tree-size order, each compared with the tree's root when the walk
    over the entries reaches its size."""

    def __init__(self, checkpoints: list[Checkpoint], report: VerifyReport) -> None:
        self.covered = max((c.tree_size for c in checkpoints), default=0)
        self._pending = iter(checkpoints)
        self._next = next(self._pending, None)
        self._report = report

    def settle(self, size: int, frontier: list[bytes]) -> int:
        """Check every checkpoint of tree size ``size`` against the tree ``frontier`` makes;
        returns the size of the next checkpoint (-1 when none is left)."""
        while self._next is not None and self._next.tree_size == size:
            self._report.checkpoints_checked += 1
            if _frontier_root(frontier).hex() != self._next.root_hash:
                self._report.fail(
                    f"checkpoint at size {self._next.tree_size} (signed "
                    f"{self._next.signed_at.isoformat()}): root hash does not match the "
                    f"entries; an entry below {self._next.tree_size} was altered",
                )
            self._next = next(self._pending, None)
        return self._next.tree_size if self._next is not None else -1

    def unreached(self) -> Iterator[Checkpoint]:
        """The checkpoints the walk never settled: larger than the stored tree."""
        while self._next is not None:
            yield self._next
            self._next = next(self._pending, None)


def _counting(
    progress: Callable[[int, int], None] | None, total: int
) -> Callable[[int], None] | None:
    if progress is None:
        return None
    return lambda walked: progress(walked, max(total, walked))


def _verify_entries(
    signed_roots: _SignedRoots,
    report: VerifyReport,
    *,
    progress: Callable[[int], None] | None = None,
) -> tuple[int, int]:
    """Walk the stored entries in seq order, rebuilding the tree and settling checkpoints on
    the way; returns (entries walked, last seq stored, -1 when none). Call inside a
    transaction (``_entry_batches``)."""
    frontier: list[bytes] = []  # roots of the perfect subtrees so far (MerkleAccumulator)
    size = 0
    last_seq = -1
    covered = signed_roots.covered
    tails: dict[str, str] = {}
    sha256 = _sha256
    next_size = signed_roots.settle(size, frontier)
    # The stored leaf hashes feed the tree (a recomputed mismatch is already reported),
    # so a row whose content and hash were both rewritten is caught by the signed roots.
    for seq, kind, canonical, stored_hex in _walk(_entry_batches(), size, progress):
        if seq != size:
            report.fail(f"entry {size} is missing: the next entry stored is {seq}", size)
        leaf = sha256(b"\x00" + canonical.encode()).digest()
        if leaf.hex() != stored_hex:
            stored = _stored_leaf(seq, stored_hex, report)
            if stored is not None:
                leaf = stored  # keep going with what the tree was built from
        tail = tails.get(kind)
        if tail is None:
            tail = tails[kind] = f',"kind":{json.dumps(kind, ensure_ascii=False)},"seq":'
        if (
            seq >= covered
            or not canonical.startswith('{"at":')
            or not canonical.endswith(f"{tail}{seq}}}")
        ):
            _check_document(seq, kind, canonical, report)
        # MerkleAccumulator.append, inlined: merge equal-sized subtrees like a carry.
        carry = size
        while carry & 1:
            leaf = sha256(b"\x01" + frontier.pop() + leaf).digest()
            carry >>= 1
        frontier.append(leaf)
        size += 1
        last_seq = seq
        if size == next_size:
            next_size = signed_roots.settle(size, frontier)
    return size, last_seq


def _walk(
    batches: Iterator[list[_EntryRow]], start: int, progress: Callable[[int], None] | None
) -> Iterator[_EntryRow]:
    """The rows of each batch in turn, telling ``progress`` how many were walked after each
    batch (the count of rows yielded, whatever their seqs say)."""
    walked = start
    for rows in batches:
        yield from rows
        walked += len(rows)
        if progress is not None:
            progress(walked)


def _stored_leaf(seq: int, stored_hex: str, report: VerifyReport) -> bytes | None:
    """Report an entry whose content does not match its stored leaf hash; returns that
    stored hash, or None when it is malformed."""
    report.fail(f"entry {seq}: content does not match its stored leaf hash", seq)
    try:
        stored = bytes.fromhex(stored_hex)
    except ValueError:
        stored = b""
    if len(stored) != HASH_SIZE:
        report.fail(f"entry {seq}: stored leaf hash is malformed", seq)
        return None
    return stored


def _report_deleted_tail(report: VerifyReport, *, head_size: int, last_seq: int) -> None:
    if last_seq + 1 < head_size:
        report.fail(
            f"the ledger head counts {head_size} entries but the last one stored is "
            f"{last_seq}: entries from {last_seq + 1} were deleted",
            last_seq + 1,
        )


def _report_checkpoints_beyond(
    report: VerifyReport, checkpoints: Iterator[Checkpoint], *, size: int
) -> None:
    for checkpoint in checkpoints:
        report.fail(
            f"checkpoint at size {checkpoint.tree_size} is beyond the ledger's "
            f"{size} entries: entries were deleted"
        )
