"""export_consent_audit writes a bundle that the standalone verify_bundle.py accepts
offline with the operator's pinned key, and rejects, naming the first failing item, once any
byte of it is altered or it is re-signed with another key. The bundle holds no personal data."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import shlex
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import transaction
from django.utils import timezone
from rest_framework.test import APIClient

from consent import gate, grants, ledger, merkle, proofs, sequencer
from consent.audit_export import BUNDLE_FILES
from consent.models import ConsentGrant, LedgerEntry
from tests.consent.conftest import MakeGrant
from tests.factories import PartnerFactory, referral_payload


@pytest.fixture(autouse=True)
def _empty_subtree_cache() -> Iterator[None]:
    proofs.clear_cache()
    yield
    proofs.clear_cache()


@dataclass
class Referral:
    subject_id: str
    receipt_id: str
    applicant: dict[str, str]


def _refer(client: APIClient) -> Referral:
    payload = referral_payload()
    response = client.post(
        "/api/v1/referrals", payload, format="json", HTTP_IDEMPOTENCY_KEY=str(uuid.uuid4())
    )
    assert response.status_code == 201, response.content
    receipt = response.json()["consent_receipt"]
    return Referral(receipt["pii_principal_id"], receipt["receipt_id"], payload["applicant"])


@pytest.fixture
def referral(source_client: APIClient, make_grant: MakeGrant) -> Referral:
    """A referral through the real intake, disclosed to a partner and withdrawn, among
    another applicant's entries; then a signed checkpoint."""
    ours = _refer(source_client)
    _refer(source_client)  # someone else
    partner = PartnerFactory()
    grant = ConsentGrant.objects.get(id=ours.receipt_id)
    grants.add_matched_recipients(grant=grant, partner_ids=[partner.id])
    gate.disclose(grant_id=grant.id, partner_id=partner.id, purpose="loan_referral", reference="x")
    grants.withdraw(grant_id=grant.id, channel="api")
    ledger.make_checkpoint()
    return ours


def _export(*args: str) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command("export_consent_audit", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def _published_key() -> str:
    """The operator's key as an auditor obtains it out of band."""
    return base64.b64encode(ledger.public_key_bytes()).decode()


def _verify(bundle: Path, *args: str, pin: bool = True) -> subprocess.CompletedProcess[str]:
    """Run the bundle's own verifier as an auditor would: with the published key pinned,
    unless ``pin`` is false or the arguments name a key themselves."""
    if pin and "--public-key" not in args:
        args = (*args, "--public-key", _published_key())
    return subprocess.run(
        [sys.executable, str(bundle / "verify_bundle.py"), str(bundle), *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=bundle,  # nothing of the project is importable from here
        env={"PATH": "/usr/bin:/bin", "PYTHONNOUSERSITE": "1"},
    )


@pytest.fixture
def bundle(referral: Referral, tmp_path: Path) -> Path:
    out = tmp_path / "bundle"
    _export("--subject", referral.subject_id, "--out", str(out))
    return out


CORE_KINDS = ("consent.granted", "data.disclosed", "consent.withdrawn")


def _entries(bundle: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (bundle / "entries.jsonl").read_bytes().splitlines()]


def _concerning(referral: Referral) -> list[int]:
    """Seqs of the entries whose data names the subject or its receipt, from the table
    (sequenced first, as the export does)."""
    sequencer.sequence_pending()
    found = []
    for seq, canonical in LedgerEntry.objects.order_by("seq").values_list("seq", "canonical"):
        data = json.loads(canonical)["data"]
        if referral.subject_id == data.get("subject_id") or referral.receipt_id == data.get(
            "receipt_id"
        ):
            found.append(seq)
    return found


# --- A fresh bundle ------------------------------------------------------------------------


def test_subject_bundle_holds_that_subjects_entries_and_verifies_offline(
    bundle: Path, referral: Referral
) -> None:
    result = _verify(bundle)

    assert sorted(p.name for p in bundle.iterdir()) == sorted(BUNDLE_FILES)
    entries = _entries(bundle)
    kinds = [e["kind"] for e in entries]
    assert [k for k in kinds if k in CORE_KINDS] == list(CORE_KINDS)
    assert [e["seq"] for e in entries] == _concerning(referral)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("OK: checkpoint signature verified")
    assert f"{len(entries)} entries and their inclusion proofs verified" in result.stdout


def test_bundle_verifies_with_the_published_key_and_not_with_another(bundle: Path) -> None:
    published = _published_key()
    other = base64.b64encode(bytes(range(32))).decode()

    assert _verify(bundle, "--public-key", published).returncode == 0
    result = _verify(bundle, "--public-key", other)
    assert result.returncode == 1
    assert "FAIL: checkpoint.json: signature does not verify" in result.stdout


def test_bundle_holds_no_personal_data(bundle: Path, referral: Referral) -> None:
    text = "\n".join((bundle / name).read_text() for name in BUNDLE_FILES)

    for field, value in referral.applicant.items():
        assert value not in text, field
    assert "13800138000" not in text  # the phone, normalised


def test_time_range_bundle_verifies(referral: Referral, tmp_path: Path) -> None:
    now = timezone.now()
    out = tmp_path / "range"

    stdout, _ = _export(
        "--since",
        (now - timedelta(hours=1)).isoformat(),
        "--until",
        (now + timedelta(hours=1)).isoformat(),
        "--out",
        str(out),
    )

    assert len(_entries(out)) == LedgerEntry.objects.count()
    assert f"wrote {LedgerEntry.objects.count()} entries" in stdout
    assert _verify(out).returncode == 0


def test_entries_after_the_checkpoint_are_left_out_and_reported(
    referral: Referral, tmp_path: Path
) -> None:
    with transaction.atomic():
        ledger.append(kind="test.event", data={"subject_id": referral.subject_id})

    _, stderr = _export("--subject", referral.subject_id, "--out", str(tmp_path / "b"))

    assert len(_entries(tmp_path / "b")) == len(_concerning(referral)) - 1
    assert "1 matching entries are newer than the latest checkpoint" in stderr


# --- An altered bundle ---------------------------------------------------------------------


def _rewrite(path: Path, old: bytes, new: bytes) -> None:
    raw = path.read_bytes()
    assert raw.count(old) >= 1
    path.write_bytes(raw.replace(old, new, 1))


def test_one_byte_changed_in_an_entry_fails_naming_it(bundle: Path) -> None:
    needle = b'"purpose":"loan_referral"'
    lines = (bundle / "entries.jsonl").read_bytes().splitlines()
    line = next(n for n, text in enumerate(lines, start=1) if needle in text)
    seq = json.loads(lines[line - 1])["seq"]
    _rewrite(bundle / "entries.jsonl", needle, b'"purpose":"loan_referraL"')

    result = _verify(bundle)

    assert result.returncode == 1
    assert result.stdout.startswith(
        f"FAIL: entry {seq} (line {line} of entries.jsonl): content does not match"
    )


def test_checkpoint_root_changed_fails(bundle: Path) -> None:
    document = json.loads((bundle / "checkpoint.json").read_text())
    root = bytearray(base64.b64decode(document["root_hash"]))
    root[0] ^= 1
    document["root_hash"] = base64.b64encode(bytes(root)).decode()
    document.pop("root_hash_hex")
    document.pop("signed_body")
    (bundle / "checkpoint.json").write_text(json.dumps(document))

    result = _verify(bundle)

    assert result.returncode == 1
    assert "FAIL: checkpoint.json: signature does not verify" in result.stdout


def test_checkpoint_size_changed_fails(bundle: Path) -> None:
    _rewrite(bundle / "checkpoint.json", b'"tree_size": ', b'"tree_size": 1')

    result = _verify(bundle)

    assert result.returncode == 1
    assert result.stdout.startswith("FAIL: checkpoint.json")


def test_one_proof_hash_changed_fails_naming_the_entry(bundle: Path) -> None:
    document = json.loads((bundle / "proofs.json").read_text())
    last = document["proofs"][-1]
    digit = last["hashes"][0][0]
    last["hashes"][0] = ("1" if digit != "1" else "2") + last["hashes"][0][1:]
    (bundle / "proofs.json").write_text(json.dumps(document))

    result = _verify(bundle)

    assert result.returncode == 1
    assert result.stdout.startswith(
        f"FAIL: entry {last['leaf_index']} (line {len(document['proofs'])} of entries.jsonl): "
        "inclusion proof does not"
    )


def test_a_dropped_entry_fails(bundle: Path) -> None:
    lines = (bundle / "entries.jsonl").read_bytes().splitlines(keepends=True)
    (bundle / "entries.jsonl").write_bytes(b"".join(lines[1:]))

    result = _verify(bundle)

    assert result.returncode == 1
    n = len(lines)
    assert f"FAIL: entries.jsonl has {n - 1} entries but proofs.json {n}" in result.stdout


# --- A forged bundle: altered and re-signed with another key -----------------------------


def _forge(bundle: Path) -> tuple[Path, str]:
    """Rewrite history as an insider would: alter an entry, rebuild the Merkle tree over it
    (every proof consistent), sign a new checkpoint with a random Ed25519 key and put that
    key in public_key.txt. Returns the bundle and the forged key's fingerprint (key_id)."""
    lines = (bundle / "entries.jsonl").read_bytes().splitlines()
    number = next(n for n, line in enumerate(lines) if b'"purpose":"loan_referral"' in line)
    lines[number] = lines[number].replace(b'"loan_referral"', b'"marketing"')
    checkpoint = json.loads((bundle / "checkpoint.json").read_text())
    size = checkpoint["tree_size"]
    leaves = [
        bytes.fromhex(h)
        for h in LedgerEntry.objects.order_by("seq").values_list("leaf_hash", flat=True)[:size]
    ]
    seqs = [json.loads(line)["seq"] for line in lines]
    for seq, line in zip(seqs, lines, strict=True):
        leaves[seq] = merkle.leaf_hash(line)
    root = merkle.root_from_leaf_hashes(leaves)
    key = Ed25519PrivateKey.generate()
    raw = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    body = (
        f"{ledger.CHECKPOINT_ORIGIN}\n{size}\n{base64.b64encode(root).decode()}\n"
        f"{checkpoint['signed_at']}\n"
    )
    checkpoint.update(
        root_hash=base64.b64encode(root).decode(),
        root_hash_hex=root.hex(),
        signed_body=body,
        key_id=hashlib.sha256(raw).hexdigest(),
        signature=base64.b64encode(key.sign(body.encode())).decode(),
    )
    forged = bundle.parent / "forged"
    shutil.copytree(bundle, forged)
    (forged / "entries.jsonl").write_bytes(b"".join(line + b"\n" for line in lines))
    (forged / "checkpoint.json").write_text(json.dumps(checkpoint, indent=2))
    (forged / "public_key.txt").write_text(base64.b64encode(raw).decode() + "\n")
    proofs_doc = {
        "tree_size": size,
        "proofs": [
            {
                "leaf_index": seq,
                "leaf_hash": leaves[seq].hex(),
                "hashes": [h.hex() for h in merkle.inclusion_proof(leaves, seq)],
            }
            for seq in seqs
        ],
    }
    (forged / "proofs.json").write_text(json.dumps(proofs_doc))
    return forged, hashlib.sha256(raw).hexdigest()


def test_a_forged_bundle_is_not_reported_ok_without_a_pinned_key(bundle: Path) -> None:
    forged, _ = _forge(bundle)

    result = _verify(forged, pin=False)

    assert result.returncode != 0
    assert "OK" not in result.stdout
    assert "--public-key" in result.stdout  # says how to pin the key
    assert "/api/v1/ledger/public-key" in result.stdout


def test_a_genuine_bundle_without_a_pinned_key_is_not_reported_ok_either(bundle: Path) -> None:
    result = _verify(bundle, pin=False)

    assert result.returncode != 0
    assert "OK" not in result.stdout
    assert "--public-key" in result.stdout


def test_a_forged_bundle_fails_against_the_pinned_key(bundle: Path) -> None:
    forged, _ = _forge(bundle)

    result = _verify(forged)

    assert result.returncode == 1
    assert result.stdout.startswith("FAIL: checkpoint.json: signature does not verify")


def test_trusting_the_bundled_key_prints_its_fingerprint_and_a_warning(bundle: Path) -> None:
    forged, forged_key_id = _forge(bundle)

    result = _verify(forged, "--trust-bundled-key", pin=False)
    genuine = _verify(bundle, "--trust-bundled-key", pin=False)

    # The forgery is self-consistent, so it verifies, but only under a loud warning that
    # shows a fingerprint which is not the operator's key_id.
    assert result.returncode == 0, result.stdout + result.stderr
    warning, _, rest = result.stdout.partition("OK: ")
    assert "WARNING" in warning and "not pinned" in warning
    assert forged_key_id in warning
    assert ledger.public_key_id() not in result.stdout
    assert rest.startswith("checkpoint signature verified")
    assert genuine.returncode == 0
    assert ledger.public_key_id() in genuine.stdout.partition("OK: ")[0]


def test_pinning_a_key_and_trusting_the_bundled_one_together_is_refused(bundle: Path) -> None:
    result = _verify(bundle, "--trust-bundled-key")

    assert result.returncode == 2
    assert "OK" not in result.stdout


def test_export_prints_a_verify_command_with_the_pinned_key_and_its_fingerprint(
    referral: Referral, tmp_path: Path
) -> None:
    out = tmp_path / "printed"

    stdout, _ = _export("--subject", referral.subject_id, "--out", str(out))

    command = next(line for line in stdout.splitlines() if "verify_bundle.py" in line)
    argv = shlex.split(command.partition("python ")[2])
    assert argv[argv.index("--public-key") + 1] == _published_key()
    assert ledger.public_key_id() in stdout
    assert ledger.public_key_id() in (out / "README.txt").read_text()
    result = subprocess.run(
        [sys.executable, *argv], capture_output=True, text=True, timeout=60, cwd=out
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("OK: checkpoint signature verified")


# --- Consistency answers from the API ------------------------------------------------------


def test_consistency_answer_verifies_offline_and_fails_when_altered(
    referral: Referral, source_client: APIClient, tmp_path: Path
) -> None:
    first = LedgerEntry.objects.count()
    with transaction.atomic():
        ledger.append(kind="test.event", data={})
    second = ledger.make_checkpoint().tree_size
    answer = source_client.get(f"/api/v1/ledger/consistency?first={first}&second={second}")
    path = tmp_path / "consistency.json"
    path.write_text(answer.content.decode())
    verifier = Path(__file__).resolve().parents[2] / "consent" / "verify_bundle.py"
    key = _published_key()

    def run() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, str(verifier), "--consistency", str(path), "--public-key", key],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=tmp_path,
        )

    ok = run()
    document = answer.json()
    document["hashes"][0] = "00" * 32
    path.write_text(json.dumps(document))
    altered = run()

    assert (ok.returncode, ok.stdout.strip()) == (
        0,
        f"OK: both checkpoints signed; tree {first} is a prefix of tree {second}",
    )
    assert altered.returncode == 1
    assert "FAIL: consistency proof" in altered.stdout


# --- Bad arguments -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "--out DIR is required"),
        (["--out", "{tmp}/x"], "give either --subject UUID or --since ISO --until ISO"),
        (["--subject", "nope", "--out", "{tmp}/x"], "--subject must be a subject id (UUID)"),
        (
            ["--subject", str(uuid.uuid4()), "--since", "2026-01-01", "--out", "{tmp}/x"],
            "give either --subject UUID or --since ISO --until ISO",
        ),
        (["--since", "2026-01-01", "--out", "{tmp}/x"], "needs both --since and --until"),
        (
            ["--since", "yesterday", "--until", "2026-01-01", "--out", "{tmp}/x"],
            "--since must be an ISO 8601 date or time",
        ),
        (
            ["--since", "2026-02-01", "--until", "2026-01-01", "--out", "{tmp}/x"],
            "since must be before until",
        ),
        (["--subject", str(uuid.uuid4()), "--out", "{tmp}"], "is not an empty directory"),
    ],
)
def test_bad_arguments_are_refused_plainly(
    referral: Referral, tmp_path: Path, args: list[str], message: str
) -> None:
    (tmp_path / "occupied").write_text("")
    with pytest.raises(CommandError, match=message.replace("(", r"\(").replace(")", r"\)")):
        _export(*(a.replace("{tmp}", str(tmp_path)) for a in args))


def test_export_without_any_checkpoint_is_refused(source_client: APIClient, tmp_path: Path) -> None:
    subject = _refer(source_client).subject_id

    with pytest.raises(CommandError, match="no signed checkpoint yet"):
        _export("--subject", subject, "--out", str(tmp_path / "b"))
