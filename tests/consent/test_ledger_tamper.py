"""The consent ledger detects tampering: every edit, deletion, insertion, swap or forged
checkpoint makes ``verify_consent_ledger`` fail, naming the first bad entry when it can.

On PostgreSQL a trigger refuses these edits in the first place (test_ledger_sequencer); the
tampering here is done as an attacker with the database owner's rights would, with the
triggers switched off, to show that verification catches it anyway."""

from __future__ import annotations

import base64
import hashlib
import io
import json
from collections.abc import Sequence
from functools import partial
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection, transaction

from consent import gate, grants, ledger, sequencer
from consent.merkle import consistency_proof, inclusion_proof, verify_consistency, verify_inclusion
from consent.models import Checkpoint, LedgerEntry, LedgerHead
from tests.concurrency import run_concurrently
from tests.consent.conftest import MakeGrant
from tests.factories import PartnerFactory

SIZE = 50
CHECKPOINT_SIZES = (16, 33, SIZE)


@pytest.fixture
def built_ledger(make_grant: MakeGrant) -> None:
    """About 50 entries: real grants, disclosures and a withdrawal, then filler events;
    checkpoints signed at sizes 16 and 33 (mid-way) and 50 (the end)."""
    partner = PartnerFactory()
    for _ in range(3):
        grant = make_grant(partners=[partner])
        gate.disclose(
            grant_id=grant.id, partner_id=partner.id, purpose="loan_referral", reference="lead:x"
        )
    grants.withdraw(grant_id=grant.id, channel="api")
    for size in CHECKPOINT_SIZES:
        while LedgerEntry.objects.count() < size:
            with transaction.atomic():
                ledger.append(
                    kind="test.event", data={"note": f"filler {LedgerEntry.objects.count()}"}
                )
        ledger.make_checkpoint()
    assert LedgerEntry.objects.count() == SIZE
    assert list(Checkpoint.objects.values_list("tree_size", flat=True)) == list(CHECKPOINT_SIZES)


def _sql(query: str, params: Sequence[Any] = ()) -> None:
    with transaction.atomic(), connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SET LOCAL session_replication_role = replica")  # triggers off
        cursor.execute(query, params)


def _row(seq: int) -> tuple[str, str, str]:
    entry = LedgerEntry.objects.get(seq=seq)
    return entry.kind, entry.canonical, entry.leaf_hash


def _leaf_hex(canonical: str) -> str:
    return hashlib.sha256(b"\x00" + canonical.encode()).hexdigest()


def _flip_one_character(canonical: str, seq: int) -> str:
    """Change one character of the entry's data (still valid, canonical JSON)."""
    document = json.loads(canonical)
    key = sorted(document["data"])[0]
    value = json.dumps(document["data"][key])
    index = next(i for i, ch in enumerate(value) if ch.isalnum())
    replacement = "1" if value[index] != "1" else "2"
    tampered = canonical.replace(value, value[:index] + replacement + value[index + 1 :], 1)
    assert tampered != canonical and len(tampered) == len(canonical), seq
    return tampered


def _verify_command(*args: str) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command("verify_consent_ledger", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def _assert_command_fails(*args: str) -> tuple[str, str]:
    err = io.StringIO()
    with pytest.raises(CommandError) as failed:
        call_command("verify_consent_ledger", *args, stdout=io.StringIO(), stderr=err)
    return str(failed.value), err.getvalue()


# --- An untouched ledger -----------------------------------------------------------------


def test_untouched_ledger_verifies_and_counts_entries_and_checkpoints(built_ledger: None) -> None:
    report = ledger.verify_ledger()

    assert report.ok, report.problems
    assert (report.entries_checked, report.checkpoints_checked) == (SIZE, 3)
    assert report.first_bad_seq is None


def test_verify_command_exits_zero_and_prints_the_counts(built_ledger: None) -> None:
    out, err = _verify_command()

    assert "consent ledger OK: 50 entries and 3 signed checkpoints verified" in out
    assert err == ""


def test_entries_appended_after_the_last_checkpoint_still_verify(built_ledger: None) -> None:
    with transaction.atomic():
        ledger.append(kind="test.event", data={"note": "after the last checkpoint"})
    sequencer.sequence_pending()

    report = ledger.verify_ledger()

    assert report.ok, report.problems
    assert (report.entries_checked, report.checkpoints_checked) == (SIZE + 1, 3)
    assert report.pending == 0


def test_pending_entries_are_counted_not_reported_as_tampering(built_ledger: None) -> None:
    with transaction.atomic():
        for n in range(3):
            ledger.append(kind="test.event", data={"note": f"pending {n}"})

    report = ledger.verify_ledger()
    out, err = _verify_command()

    assert report.ok, report.problems
    assert (report.entries_checked, report.pending) == (SIZE, 3)
    assert "consent ledger OK: 50 entries and 3 signed checkpoints verified" in out
    assert "3 entries pending sequencing" in out
    assert err == ""


def test_append_outside_a_transaction_is_refused(transactional_db: None) -> None:
    with pytest.raises(RuntimeError, match="inside the transaction"):
        ledger.append(kind="test.event", data={})

    assert not LedgerEntry.objects.exists()


# --- Tampering ---------------------------------------------------------------------------


def test_one_byte_changed_in_an_entry_is_detected_at_that_entry(built_ledger: None) -> None:
    seq = LedgerEntry.objects.filter(kind="data.disclosed").order_by("seq")[1].seq
    _, canonical, _ = _row(seq)
    _sql(
        "UPDATE consent_ledgerentry SET canonical = %s WHERE seq = %s",
        [_flip_one_character(canonical, seq), seq],
    )

    report = ledger.verify_ledger()
    message, stderr = _assert_command_fails()

    assert report.first_bad_seq == seq
    assert f"entry {seq}: content does not match its stored leaf hash" in report.problems
    assert f"first bad entry: {seq})" in message
    assert f"TAMPERED: entry {seq}: content does not match" in stderr


def test_one_byte_changed_with_its_leaf_hash_recomputed_is_caught_by_checkpoints(
    built_ledger: None,
) -> None:
    seq = 20
    _, canonical, _ = _row(seq)
    tampered = _flip_one_character(canonical, seq)
    _sql(
        "UPDATE consent_ledgerentry SET canonical = %s, leaf_hash = %s WHERE seq = %s",
        [tampered, _leaf_hex(tampered), seq],
    )

    report = ledger.verify_ledger()
    message, stderr = _assert_command_fails()

    # Each row is consistent in itself: only the signed roots above it can tell.
    assert report.first_bad_seq is None
    failing = [p for p in report.problems if "root hash does not match" in p]
    assert [p.split(" (")[0] for p in failing] == ["checkpoint at size 33", "checkpoint at size 50"]
    assert "FAILED" in message
    assert "checkpoint at size 33" in stderr
    assert "checkpoint at size 16" not in stderr


def test_deleted_entry_is_named_as_missing(built_ledger: None) -> None:
    _sql("DELETE FROM consent_ledgerentry WHERE seq = %s", [20])

    report = ledger.verify_ledger()
    message, stderr = _assert_command_fails()

    assert report.first_bad_seq == 20
    assert report.problems[0] == "entry 20 is missing: the next entry stored is 21"
    assert "first bad entry: 20)" in message
    assert "checkpoint at size 50 is beyond the ledger's 49 entries" in stderr


def test_deleted_last_entry_is_caught_by_the_final_checkpoint(built_ledger: None) -> None:
    _sql("DELETE FROM consent_ledgerentry WHERE seq = %s", [SIZE - 1])

    report = ledger.verify_ledger()
    message, stderr = _assert_command_fails()

    assert report.first_bad_seq == SIZE - 1
    assert "checkpoint at size 50 is beyond the ledger's 49 entries" in stderr
    assert "FAILED" in message


def test_deleted_entry_after_the_last_checkpoint_is_caught_by_the_ledger_head(
    built_ledger: None,
) -> None:
    with transaction.atomic():
        ledger.append(kind="test.event", data={"note": "not yet checkpointed"})
    sequencer.sequence_pending()
    _sql("DELETE FROM consent_ledgerentry WHERE seq = %s", [SIZE])

    report = ledger.verify_ledger()
    message, stderr = _assert_command_fails()

    assert report.first_bad_seq == SIZE
    assert f"first bad entry: {SIZE})" in message
    assert f"the ledger head counts {SIZE + 1} entries but the last one stored is" in stderr


def _shift_entries_from(seq: int) -> None:
    # Two steps so no intermediate row collides with another's primary key.
    _sql("UPDATE consent_ledgerentry SET seq = seq + 1000 WHERE seq >= %s", [seq])
    _sql("UPDATE consent_ledgerentry SET seq = seq - 999 WHERE seq >= 1000")


def _forge_entry(seq: int) -> str:
    canonical = ledger.canonical_json(
        {
            "seq": seq,
            "kind": "consent.withdrawn",
            "at": "2026-01-01T00:00:00+00:00",
            "data": {"receipt_id": "forged", "channel": "api"},
        }
    )
    _sql(
        "INSERT INTO consent_ledgerentry (seq, kind, canonical, leaf_hash, created_at) "
        "VALUES (%s, %s, %s, %s, %s)",
        [seq, "consent.withdrawn", canonical, _leaf_hex(canonical), "2026-01-01 00:00:00"],
    )
    return canonical


def test_entry_inserted_in_the_middle_by_renumbering_is_detected(built_ledger: None) -> None:
    _shift_entries_from(20)
    _forge_entry(20)
    _sql("UPDATE consent_ledgerhead SET size = size + 1")

    report = ledger.verify_ledger()
    message, _ = _assert_command_fails()

    # The forged row is consistent in itself; the displaced entry after it is not.
    assert report.first_bad_seq == 21
    assert "entry 21: content says it is entry 20" in report.problems
    assert "first bad entry: 21)" in message
    assert any(p.startswith("checkpoint at size 33") for p in report.problems)


def test_entry_inserted_with_later_entries_rewritten_and_rehashed_is_caught_by_checkpoints(
    built_ledger: None,
) -> None:
    # The careful attacker renumbers the content of every later entry and rehashes it.
    later = list(LedgerEntry.objects.filter(seq__gte=20).order_by("-seq"))
    for entry in later:
        document = json.loads(entry.canonical)
        document["seq"] = entry.seq + 1
        canonical = ledger.canonical_json(document)
        _sql(
            "UPDATE consent_ledgerentry SET seq = %s, canonical = %s, leaf_hash = %s "
            "WHERE seq = %s",
            [entry.seq + 1, canonical, _leaf_hex(canonical), entry.seq],
        )
    _forge_entry(20)
    _sql("UPDATE consent_ledgerhead SET size = size + 1")

    report = ledger.verify_ledger()
    _assert_command_fails()

    assert report.entries_checked == SIZE + 1
    failing = [p.split(" (")[0] for p in report.problems]
    assert failing == ["checkpoint at size 33", "checkpoint at size 50"]


def test_two_entries_swapped_are_detected_at_the_first(built_ledger: None) -> None:
    first, second = _row(10), _row(30)
    update = (
        "UPDATE consent_ledgerentry SET kind = %s, canonical = %s, leaf_hash = %s WHERE seq = %s"
    )
    _sql(update, [*second, 10])
    _sql(update, [*first, 30])

    report = ledger.verify_ledger()
    message, _ = _assert_command_fails()

    assert report.first_bad_seq == 10
    assert "entry 10: content says it is entry 30" in report.problems
    assert "entry 30: content says it is entry 10" in report.problems
    assert "first bad entry: 10)" in message


def test_checkpoint_with_a_changed_root_hash_fails_its_signature(built_ledger: None) -> None:
    checkpoint = Checkpoint.objects.get(tree_size=33)
    forged_root = hashlib.sha256(b"a tree the attacker prefers").hexdigest()
    _sql("UPDATE consent_checkpoint SET root_hash = %s WHERE id = %s", [forged_root, checkpoint.id])

    report = ledger.verify_ledger()
    _, stderr = _assert_command_fails()

    assert "checkpoint at size 33: signature does not verify" in report.problems
    assert "TAMPERED: checkpoint at size 33: signature does not verify" in stderr
    assert "checkpoint at size 16: signature" not in stderr


def test_checkpoint_with_forged_signature_bytes_fails(built_ledger: None) -> None:
    checkpoint = Checkpoint.objects.get(tree_size=SIZE)
    signature = bytearray(base64.b64decode(checkpoint.signature))
    signature[0] ^= 0x01
    _sql(
        "UPDATE consent_checkpoint SET signature = %s WHERE id = %s",
        [base64.b64encode(bytes(signature)).decode(), checkpoint.id],
    )

    report = ledger.verify_ledger()

    assert report.problems == ["checkpoint at size 50: signature does not verify"]
    _assert_command_fails()


def _raw_public_key(private: Ed25519PrivateKey) -> str:
    raw = private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return base64.b64encode(raw).decode()


def test_checkpoints_do_not_verify_under_another_public_key(built_ledger: None) -> None:
    other = _raw_public_key(Ed25519PrivateKey.generate())

    message, stderr = _assert_command_fails("--public-key", other)

    for size in CHECKPOINT_SIZES:
        assert f"checkpoint at size {size}: signature does not verify" in stderr
    assert "FAILED" in message


def test_verify_command_accepts_our_own_public_key(built_ledger: None) -> None:
    ours = base64.b64encode(ledger.public_key_bytes()).decode()

    out, _ = _verify_command("--public-key", ours)

    assert "consent ledger OK" in out


def test_verify_command_rejects_a_malformed_public_key(built_ledger: None) -> None:
    message, _ = _assert_command_fails("--public-key", base64.b64encode(b"short").decode())

    assert "not a base64 Ed25519 public key" in message


def test_checkpoint_signed_by_another_key_is_rejected(built_ledger: None, settings: Any) -> None:
    signing_key = settings.LEDGER_SIGNING_KEY
    attacker = Ed25519PrivateKey.generate()
    settings.LEDGER_SIGNING_KEY = base64.b64encode(
        attacker.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    ).decode()
    ledger.make_checkpoint()  # well-formed, correct root, wrong key
    settings.LEDGER_SIGNING_KEY = signing_key

    report = ledger.verify_ledger()

    assert report.problems == ["checkpoint at size 50: signature does not verify"]
    _assert_command_fails()


# --- Auditing without trusting our code ---------------------------------------------------


def _tree_hash(leaves: Sequence[bytes]) -> bytes:
    """RFC 9162 Merkle Tree Hash written out from the RFC, independent of consent.merkle."""
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return leaves[0]
    split = 1 << ((len(leaves) - 1).bit_length() - 1)
    return hashlib.sha256(
        b"\x01" + _tree_hash(leaves[:split]) + _tree_hash(leaves[split:])
    ).digest()


def test_checkpoint_can_be_rebuilt_and_verified_by_hand(built_ledger: None) -> None:
    public_key = Ed25519PublicKey.from_public_bytes(ledger.public_key_bytes())
    canonicals = list(LedgerEntry.objects.order_by("seq").values_list("canonical", flat=True))
    leaves = [hashlib.sha256(b"\x00" + c.encode("utf-8")).digest() for c in canonicals]

    for checkpoint in Checkpoint.objects.all():
        root = _tree_hash(leaves[: checkpoint.tree_size])
        assert root.hex() == checkpoint.root_hash
        body = (
            "decline-marketplace/consent-ledger\n"
            f"{checkpoint.tree_size}\n"
            f"{base64.b64encode(root).decode()}\n"
            f"{checkpoint.signed_at.isoformat()}\n"
        ).encode()
        assert body == ledger.checkpoint_body(
            checkpoint.tree_size, checkpoint.root_hash, checkpoint.signed_at
        )
        public_key.verify(base64.b64decode(checkpoint.signature), body)  # raises if bad
        assert checkpoint.key_id == hashlib.sha256(ledger.public_key_bytes()).hexdigest()


def test_inclusion_proofs_over_stored_leaves_verify_against_a_checkpoint(
    built_ledger: None,
) -> None:
    checkpoint = Checkpoint.objects.get(tree_size=33)
    leaves = [
        bytes.fromhex(h)
        for h in LedgerEntry.objects.filter(seq__lt=33).values_list("leaf_hash", flat=True)
    ]
    root = bytes.fromhex(checkpoint.root_hash)

    for index, leaf in enumerate(leaves):
        proof = inclusion_proof(leaves, index)
        assert verify_inclusion(leaf_hash=leaf, index=index, tree_size=33, proof=proof, root=root)
    forged = bytes.fromhex(_leaf_hex("forged"))
    assert not verify_inclusion(
        leaf_hash=forged, index=5, tree_size=33, proof=inclusion_proof(leaves, 5), root=root
    )


def test_later_checkpoint_is_consistent_with_earlier_ones(built_ledger: None) -> None:
    leaves = [bytes.fromhex(h) for h in LedgerEntry.objects.values_list("leaf_hash", flat=True)]
    roots = {c.tree_size: bytes.fromhex(c.root_hash) for c in Checkpoint.objects.all()}

    for old_size in (16, 33):
        assert verify_consistency(
            old_size=old_size,
            new_size=SIZE,
            old_root=roots[old_size],
            new_root=roots[SIZE],
            proof=consistency_proof(leaves, old_size),
        )


# --- Concurrency (PostgreSQL) ------------------------------------------------------------


@pytest.mark.postgres
def test_concurrent_appends_get_gapless_sequence_numbers(transactional_db: None) -> None:
    threads, per_thread = 4, 25

    def appender(worker: int) -> None:
        for n in range(per_thread):
            with transaction.atomic():
                ledger.append(kind="test.event", data={"worker": worker, "n": n})

    results = run_concurrently(*(partial(appender, w) for w in range(threads)))

    errors = [r for r in results if isinstance(r, BaseException)]
    assert errors == []
    total = threads * per_thread
    assert list(LedgerEntry.objects.values_list("seq", flat=True)) == list(range(total))
    assert LedgerHead.objects.get(id=1).size == total
    ledger.make_checkpoint()
    report = ledger.verify_ledger()
    assert report.ok, report.problems
    assert (report.entries_checked, report.checkpoints_checked) == (total, 1)
