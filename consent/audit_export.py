"""Audit bundles: the ledger entries about one subject (or a time range), the latest signed
checkpoint, an inclusion proof per entry and a standalone verifier, for offline checking.

Ledger entries hold ids and hashes only (never personal data), so the bundle holds none.
The export runs the sequencer first, so every entry committed before it has its seq; the
bundle then holds those the latest signed checkpoint covers, and counts the rest.
``entries.jsonl`` has one entry per line, each line exactly the canonical bytes that were
hashed into the tree; ``proofs.json`` has the proofs in the same order.
"""

from __future__ import annotations

import base64
import json
import shutil
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import cast

from django.db.models import Q, QuerySet

from consent import ledger, proofs, sequencer
from consent.models import Checkpoint, ConsentGrant, LedgerEntry

VERIFIER = Path(__file__).with_name("verify_bundle.py")
BUNDLE_FILES = (
    "entries.jsonl",
    "checkpoint.json",
    "public_key.txt",
    "proofs.json",
    "README.txt",
    "verify_bundle.py",
)


class ExportError(ValueError):
    """The bundle cannot be written as asked (plain message, no personal data)."""


@dataclass(frozen=True)
class ExportSummary:
    entries: int
    tree_size: int
    not_yet_checkpointed: int  # matching entries after the checkpoint: not in the bundle
    public_key: str  # the operator's Ed25519 checkpoint key, base64 of the raw 32 bytes
    key_id: str  # its fingerprint: SHA-256 hex of the raw key, as GET /api/v1/ledger/public-key


_EntryRow = tuple[int, str, str]  # seq, canonical JSON, stored leaf hash (hex)


def _sequenced(entries: QuerySet[LedgerEntry]) -> Iterator[_EntryRow]:
    """The sequenced ones among ``entries`` in seq order (pending entries have no seq,
    canonical JSON or leaf hash yet)."""
    rows = (
        entries.filter(seq__isnull=False)
        .order_by("seq")
        .values_list("seq", "canonical", "leaf_hash")
        .iterator(chunk_size=2_000)
    )
    return cast(Iterator[_EntryRow], rows)


def _subject_entries(subject_id: uuid.UUID) -> list[_EntryRow]:
    """Entries whose data names the subject, or one of the subject's receipts."""
    grants = ConsentGrant.objects.filter(subject_id=subject_id)
    receipts = {str(r) for r in grants.values_list("id", flat=True)}
    # A cheap text prefilter, then the exact match on the parsed entry.
    needles = Q(canonical__contains=str(subject_id))
    for receipt in receipts:
        needles |= Q(canonical__contains=receipt)
    found = []
    for seq, canonical, stored_hash in _sequenced(LedgerEntry.objects.filter(needles)):
        data = json.loads(canonical).get("data")
        if isinstance(data, dict) and (
            data.get("subject_id") == str(subject_id) or data.get("receipt_id") in receipts
        ):
            found.append((seq, canonical, stored_hash))
    return found


def _range_entries(since: datetime, until: datetime) -> list[_EntryRow]:
    return list(_sequenced(LedgerEntry.objects.filter(created_at__gte=since, created_at__lt=until)))


def _readme(summary: ExportSummary, selection: str) -> str:
    return f"""Consent ledger audit bundle
===========================

Selection: {selection}
Entries: {summary.entries}, proved against the signed checkpoint of tree size
{summary.tree_size}.

Files
  entries.jsonl    one ledger entry per line: the exact canonical JSON (UTF-8) that was
                   hashed into the ledger's Merkle tree. Ids and hashes, no personal data.
  checkpoint.json  the signed checkpoint: tree_size, root_hash (base64; also hex), signed_at,
                   signature (base64 Ed25519) and signed_body, the exact text signed:
                   origin "\\n" tree_size "\\n" base64(root) "\\n" signed_at "\\n"
  public_key.txt   the platform's Ed25519 checkpoint key (base64, raw 32 bytes), for
                   reference only: whoever alters a bundle can re-sign it and replace this
                   file. Its key_id (SHA-256 hex of the raw key) is
                   {summary.key_id}
                   Compare it with the key the operator publishes out of band (e.g.
                   GET /api/v1/ledger/public-key) and pass that key with --public-key.
  proofs.json      one RFC 9162 inclusion proof per entry, in the same order:
                   leaf_index (= the entry's seq), leaf_hash (hex), hashes (hex, leaf upwards).
  verify_bundle.py the verifier: Python 3 standard library plus the "cryptography" package.

Verify
  pip install cryptography
  python verify_bundle.py . --public-key <the operator's published base64 key>

Without --public-key nothing is verified (exit status 2): the key must be pinned.
--trust-bundled-key checks the bundle against public_key.txt instead, after printing its
key_id and a warning; that proves only that the bundle is consistent with itself.

It checks (1) the checkpoint signature over the body rebuilt from its fields, (2) each
entry's leaf hash = SHA-256(0x00 || line bytes), (3) each inclusion proof against the signed
root with the algorithm of RFC 9162 section 2.1.3.2. It prints OK and exits 0, or FAIL with
the first item that did not verify and exits 1. The script is short: read it.
"""


def export_bundle(
    *,
    out_dir: Path,
    subject_id: uuid.UUID | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> ExportSummary:
    """Write an audit bundle into ``out_dir`` (created; must be empty if it exists).
    ``progress`` is called with (entries proved, entries to prove) as each proof is made."""
    _check_request(out_dir=out_dir, subject_id=subject_id, since=since, until=until)
    sequencer.sequence_pending()
    checkpoint = _latest_checkpoint()
    matching, selection = _select_entries(subject_id=subject_id, since=since, until=until)
    covered = [row for row in matching if row[0] < checkpoint.tree_size]
    paths = _inclusion_proofs(covered, tree_size=checkpoint.tree_size, progress=progress)
    summary = ExportSummary(
        entries=len(covered),
        tree_size=checkpoint.tree_size,
        not_yet_checkpointed=len(matching) - len(covered),
        public_key=base64.b64encode(ledger.public_key_bytes()).decode(),
        key_id=ledger.public_key_id(),
    )
    _write_bundle(
        out_dir,
        checkpoint=checkpoint,
        covered=covered,
        paths=paths,
        summary=summary,
        selection=selection,
    )
    return summary


def _check_request(
    *,
    out_dir: Path,
    subject_id: uuid.UUID | None,
    since: datetime | None,
    until: datetime | None,
) -> None:
    if (subject_id is None) == (since is None or until is None):
        raise ExportError("give either a subject or a time range (since and until)")
    if since is not None and until is not None and since >= until:
        raise ExportError("since must be before until")
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise ExportError(f"{out_dir} exists and is not an empty directory")


def _latest_checkpoint() -> Checkpoint:
    checkpoint = Checkpoint.objects.order_by("-signed_at", "-id").first()
    if checkpoint is None:
        raise ExportError("the ledger has no signed checkpoint yet: run checkpoint_ledger first")
    return checkpoint


def _select_entries(
    *, subject_id: uuid.UUID | None, since: datetime | None, until: datetime | None
) -> tuple[list[_EntryRow], str]:
    """The matching entries and the selection, as the README names it."""
    if subject_id is not None:
        return _subject_entries(subject_id), f"subject {subject_id}"
    assert since is not None and until is not None
    selection = f"entries recorded from {since.isoformat()} until {until.isoformat()}"
    return _range_entries(since, until), selection


def _inclusion_proofs(
    covered: list[_EntryRow],
    *,
    tree_size: int,
    progress: Callable[[int, int], None] | None = None,
) -> list[proofs.InclusionProof]:
    made: list[proofs.InclusionProof] = []
    seqs = [seq for seq, _, _ in covered]
    if progress is not None:
        progress(0, len(seqs))
    try:
        for proof in proofs.inclusion_proofs(proofs.ledger_hasher(), seqs, tree_size):
            made.append(proof)
            if progress is not None:
                progress(len(made), len(seqs))
    except proofs.ProofUnavailable as exc:
        raise ExportError(f"cannot prove entries: {exc}; run verify_consent_ledger") from None
    return made


def _write_bundle(
    out_dir: Path,
    *,
    checkpoint: Checkpoint,
    covered: list[_EntryRow],
    paths: list[proofs.InclusionProof],
    summary: ExportSummary,
    selection: str,
) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    _write_entries(out_dir, covered)
    document = ledger.checkpoint_document(checkpoint)
    (out_dir / "checkpoint.json").write_text(json.dumps(document, indent=2) + "\n")
    (out_dir / "public_key.txt").write_text(summary.public_key + "\n")
    _write_proofs(out_dir, paths, covered, tree_size=checkpoint.tree_size)
    (out_dir / "README.txt").write_text(_readme(summary, selection))
    shutil.copyfile(VERIFIER, out_dir / "verify_bundle.py")


def _write_entries(out_dir: Path, covered: list[_EntryRow]) -> None:
    with (out_dir / "entries.jsonl").open("wb") as entries:
        for _, canonical, _ in covered:
            entries.write(canonical.encode() + b"\n")


def _write_proofs(
    out_dir: Path,
    paths: list[proofs.InclusionProof],
    covered: list[_EntryRow],
    *,
    tree_size: int,
) -> None:
    proof_documents = [
        {
            "leaf_index": proof.leaf_index,
            "leaf_hash": stored_hash,
            "hashes": [h.hex() for h in proof.hashes],
        }
        for proof, (_, _, stored_hash) in zip(paths, covered, strict=True)
    ]
    (out_dir / "proofs.json").write_text(
        json.dumps({"tree_size": tree_size, "proofs": proof_documents}, indent=1) + "\n"
    )
