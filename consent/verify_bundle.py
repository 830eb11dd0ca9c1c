#!/usr/bin/env python3
"""Verify a consent-ledger audit bundle without the platform.

Needs only Python 3.9+ and the ``cryptography`` package (for Ed25519). It does not import
anything of the platform, so an auditor can read it in full. Usage::

    python verify_bundle.py BUNDLE_DIR --public-key BASE64
    python verify_bundle.py BUNDLE_DIR --trust-bundled-key
    python verify_bundle.py --consistency RESPONSE.json --public-key BASE64

The key must be pinned: the operator's Ed25519 key, obtained out of band (its ``key_id`` is
the SHA-256 hex of the raw 32 bytes). The bundle's own ``public_key.txt`` proves nothing,
since whoever alters a bundle can re-sign it with a key of their own and ship that key; so
without ``--public-key`` nothing is verified and the exit status is 2. ``--trust-bundled-key``
checks the bundle against its own key anyway, after printing that key's fingerprint and a
warning, to be compared with the operator's ``key_id``.

The first form checks, in order, and stops at the first failure:

1. the checkpoint: its signed body is rebuilt from its fields as
   ``origin\\nsize\\nbase64(root)\\niso-time\\n`` and its Ed25519 signature verified with the
   pinned public key;
2. every line of ``entries.jsonl`` (the exact canonical bytes of one entry): its leaf hash
   SHA-256(0x00 || bytes) equals the one in ``proofs.json``, and its ``seq`` is its leaf index;
3. every inclusion proof against the signed root (RFC 9162 §2.1.3.2).

The second form takes the JSON answer of ``GET /api/v1/ledger/consistency?first=M&second=N``
and checks both checkpoints' signatures and the consistency proof (RFC 9162 §2.1.4.2).

It prints ``OK: ...`` and exits 0, or ``FAIL: <the first failing item>: <why>`` and exits 1,
or ``NOT VERIFIED: ...`` (no pinned key) and exits 2.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

ORIGIN = "decline-marketplace/consent-ledger"


class Failure(Exception):
    """The first thing that did not verify."""


class Unpinned(Exception):
    """No key to verify against was given: nothing can be said about the bundle."""


def key_id(raw_key: bytes) -> str:
    """The key's fingerprint as the operator publishes it: SHA-256 hex of the raw 32 bytes."""
    return hashlib.sha256(raw_key).hexdigest()


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def leaf_hash(entry: bytes) -> bytes:
    """RFC 9162 §2.1.1: MTH of one entry = SHA-256(0x00 || entry)."""
    return sha256(b"\x00" + entry)


def node_hash(left: bytes, right: bytes) -> bytes:
    """RFC 9162 §2.1.1: interior node = SHA-256(0x01 || left || right)."""
    return sha256(b"\x01" + left + right)


def verify_inclusion(
    leaf: bytes, index: int, tree_size: int, proof: list[bytes], root: bytes
) -> bool:
    """RFC 9162 §2.1.3.2, step by step."""
    if not 0 <= index < tree_size or len(leaf) != 32 or any(len(p) != 32 for p in proof):
        return False
    fn, sn, r = index, tree_size - 1, leaf
    for p in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


def verify_consistency(
    first: int, second: int, first_root: bytes, second_root: bytes, proof: list[bytes]
) -> bool:
    """RFC 9162 §2.1.4.2, step by step."""
    if not 0 < first <= second or any(len(p) != 32 for p in proof):
        return False
    if first == second:
        return not proof and first_root == second_root
    if not proof:
        return False
    path = list(proof)
    if first & (first - 1) == 0:  # first is a power of two: its root starts the path
        path.insert(0, first_root)
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return sn == 0 and fr == first_root and sr == second_root


def _b64(value: Any, what: str) -> bytes:
    try:
        return base64.b64decode(str(value), validate=True)
    except (binascii.Error, ValueError):
        raise Failure(f"{what}: not base64") from None


def _hex(value: Any, what: str) -> bytes:
    try:
        raw = bytes.fromhex(str(value))
    except ValueError:
        raise Failure(f"{what}: not hex") from None
    if len(raw) != 32:
        raise Failure(f"{what}: not a 32-byte hash")
    return raw


def _json(path: Path) -> Any:
    try:
        return json.loads(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise Failure(f"{path.name}: cannot be read as JSON ({exc.__class__.__name__})") from None


def load_public_key(b64: str, what: str) -> Ed25519PublicKey:
    try:
        return Ed25519PublicKey.from_public_bytes(_b64(b64.strip(), what))
    except ValueError:
        raise Failure(f"{what}: not an Ed25519 public key") from None


def check_checkpoint(checkpoint: Any, key: Ed25519PublicKey, what: str) -> tuple[int, bytes]:
    """Rebuild the signed body from the fields and verify the signature; (size, root)."""
    if not isinstance(checkpoint, dict):
        raise Failure(f"{what}: not a JSON object")
    size, signed_at = checkpoint.get("tree_size"), checkpoint.get("signed_at")
    if not isinstance(size, int) or isinstance(size, bool) or size < 1:
        raise Failure(f"{what}: tree_size is not a positive integer")
    if checkpoint.get("origin", ORIGIN) != ORIGIN:
        raise Failure(f"{what}: origin is not {ORIGIN!r}")
    if not isinstance(signed_at, str):
        raise Failure(f"{what}: signed_at is missing")
    root = _b64(checkpoint.get("root_hash"), f"{what} root_hash")
    if len(root) != 32:
        raise Failure(f"{what}: root_hash is not a 32-byte hash")
    if "root_hash_hex" in checkpoint and checkpoint["root_hash_hex"] != root.hex():
        raise Failure(f"{what}: root_hash and root_hash_hex differ")
    root_b64 = base64.b64encode(root).decode()
    body = f"{ORIGIN}\n{size}\n{root_b64}\n{signed_at}\n".encode()
    if "signed_body" in checkpoint and checkpoint["signed_body"].encode() != body:
        raise Failure(f"{what}: signed_body is not the text rebuilt from its fields")
    try:
        key.verify(_b64(checkpoint.get("signature"), f"{what} signature"), body)
    except InvalidSignature:
        raise Failure(f"{what}: signature does not verify under the public key") from None
    return size, root


def bundled_key(bundle: Path) -> str:
    """The base64 key the bundle carries (public_key.txt): a claim, not a trust anchor."""
    try:
        return (bundle / "public_key.txt").read_text().strip()
    except OSError:
        raise Failure("public_key.txt: missing (pass --public-key)") from None


def unpinned_message(bundle: Path) -> str:
    try:
        text = bundled_key(bundle)
        claim = f"the bundle's own key (public_key.txt) has key_id {key_id(_b64(text, 'k'))}"
    except Failure:
        claim = "the bundle carries no readable key of its own"
    return (
        "NOT VERIFIED: no public key pinned. A bundle can be altered and re-signed with any "
        "key, and that key shipped in public_key.txt, so the bundle's own key proves nothing.\n"
        "Obtain the operator's Ed25519 public key out of band (from the operator, or "
        "GET /api/v1/ledger/public-key on the platform, whose key_id is the SHA-256 hex of "
        "the raw key), then run:\n"
        f"  python verify_bundle.py {bundle} --public-key <the operator's base64 key>\n"
        f"For comparison, {claim}.\n"
        "To check the bundle against its own key anyway (proves only that it is consistent "
        "with itself), add --trust-bundled-key."
    )


def trust_warning(key_text: str) -> str:
    return (
        "WARNING: key not pinned; trusting the key inside the bundle (public_key.txt), "
        f"key_id (SHA-256 of the raw key):\n  {key_id(_b64(key_text, 'public_key.txt'))}\n"
        "Anyone who alters a bundle can re-sign it with a key of their own, so an OK below "
        "means only that the bundle is consistent with this key. Compare this key_id with "
        "the operator's, obtained out of band, or pin the key with --public-key."
    )


def verify_bundle(bundle: Path, public_key_b64: str) -> str:
    key = load_public_key(public_key_b64, "public key")
    fingerprint = key_id(_b64(public_key_b64.strip(), "public key"))
    size, root = check_checkpoint(_json(bundle / "checkpoint.json"), key, "checkpoint.json")

    proofs_doc = _json(bundle / "proofs.json")
    if not isinstance(proofs_doc, dict) or not isinstance(proofs_doc.get("proofs"), list):
        raise Failure("proofs.json: no list of proofs")
    if proofs_doc.get("tree_size") != size:
        raise Failure(f"proofs.json: proofs are for tree size {proofs_doc.get('tree_size')}")
    proofs = proofs_doc["proofs"]
    try:
        raw = (bundle / "entries.jsonl").read_bytes()
    except OSError:
        raise Failure("entries.jsonl: missing") from None
    # One entry per line; the line's bytes are exactly what was hashed. Split on b"\n" only
    # (canonical JSON may hold other line separators inside strings).
    lines = raw.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    if len(lines) != len(proofs):
        raise Failure(f"entries.jsonl has {len(lines)} entries but proofs.json {len(proofs)}")
    # Lengths are equal (checked above); no strict=, so it also runs on Python 3.9.
    for number, (line, proof) in enumerate(zip(lines, proofs), start=1):  # noqa: B905
        what = f"entry on line {number} of entries.jsonl"
        try:
            entry = json.loads(line)
            seq = entry["seq"]
        except (ValueError, TypeError, KeyError):
            raise Failure(f"{what}: not a ledger entry (JSON with a seq)") from None
        what = f"entry {seq} (line {number} of entries.jsonl)"
        if not isinstance(proof, dict) or proof.get("leaf_index") != seq:
            raise Failure(f"{what}: its proof in proofs.json is for another entry")
        if leaf_hash(line) != _hex(proof.get("leaf_hash"), f"{what} leaf_hash"):
            raise Failure(f"{what}: content does not match its leaf hash")
        hashes = proof.get("hashes")
        if not isinstance(hashes, list):
            raise Failure(f"{what}: proof has no list of hashes")
        path = [_hex(h, f"{what} proof hash") for h in hashes]
        if not verify_inclusion(leaf_hash(line), seq, size, path, root):
            raise Failure(f"{what}: inclusion proof does not lead to the signed root")
    return (
        f"OK: checkpoint signature verified under key_id {fingerprint} "
        f"(tree size {size}, root {root.hex()}); "
        f"{len(lines)} entries and their inclusion proofs verified against it"
    )


def verify_consistency_answer(path: Path, public_key_b64: str | None) -> str:
    if public_key_b64 is None:
        raise Failure("--public-key is required with --consistency")
    key = load_public_key(public_key_b64, "public key")
    answer = _json(path)
    if not isinstance(answer, dict):
        raise Failure(f"{path.name}: not a JSON object")
    first, first_root = check_checkpoint(answer.get("first"), key, "first checkpoint")
    second, second_root = check_checkpoint(answer.get("second"), key, "second checkpoint")
    hashes = answer.get("hashes")
    if not isinstance(hashes, list):
        raise Failure("consistency proof: no list of hashes")
    proof = [_hex(h, "consistency proof hash") for h in hashes]
    if not verify_consistency(first, second, first_root, second_root, proof):
        raise Failure(f"consistency proof: tree {first} is not proved a prefix of tree {second}")
    return f"OK: both checkpoints signed; tree {first} is a prefix of tree {second}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Verify a consent-ledger audit bundle offline.")
    parser.add_argument("bundle", nargs="?", default=".", help="bundle directory")
    pin = parser.add_mutually_exclusive_group()
    pin.add_argument(
        "--public-key", help="base64 Ed25519 key of the operator, obtained out of band"
    )
    pin.add_argument(
        "--trust-bundled-key",
        action="store_true",
        help="verify against the bundle's own public_key.txt (prints its key_id and a warning)",
    )
    parser.add_argument("--consistency", metavar="FILE", help="a consistency-proof answer")
    args = parser.parse_args(argv)
    if args.consistency and args.trust_bundled_key:
        parser.error("--consistency needs --public-key (an API answer carries no key)")
    bundle = Path(args.bundle)
    try:
        if args.consistency:
            message = verify_consistency_answer(Path(args.consistency), args.public_key)
        elif args.public_key is not None:
            message = verify_bundle(bundle, args.public_key)
        elif args.trust_bundled_key:
            key_text = bundled_key(bundle)
            print(trust_warning(key_text))
            message = verify_bundle(bundle, key_text)
        else:
            raise Unpinned
    except Unpinned:
        print(unpinned_message(bundle))
        return 2
    except Failure as failure:
        print(f"FAIL: {failure}")
        return 1
    print(message)
    return 0


if __name__ == "__main__":
    sys.exit(main())
