"""Tests for consent.merkle: RFC 6962 conformance vectors, known roots, properties.

Pure-Python tests: no database, no Django settings needed.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consent.merkle import (
    EMPTY_ROOT,
    MerkleAccumulator,
    MerkleError,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    node_hash,
    root_from_leaf_hashes,
    verify_consistency,
    verify_inclusion,
)

DATA_DIR = Path(__file__).parent / "data" / "rfc6962"
INCLUSION_FILES = sorted(DATA_DIR.glob("inclusion/**/*.json"))
CONSISTENCY_FILES = sorted(DATA_DIR.glob("consistency/**/*.json"))


def _id(path: Path) -> str:
    return path.relative_to(DATA_DIR).as_posix()


def _b64(value: str) -> bytes:
    return base64.b64decode(value, validate=True)


def _load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    # Go's JSON encoder writes a nil slice as null.
    data["proof"] = [_b64(p) for p in data["proof"] or []]
    return data


# --- Reference tree -------------------------------------------------------------
# Leaf inputs and roots from transparency-dev/merkle testonly/constants.go
# (LeafInputs / RootHashes), the tree the conformance vectors were generated from.
REFERENCE_LEAVES = [
    bytes.fromhex(h)
    for h in (
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    )
]
REFERENCE_ROOTS = [
    bytes.fromhex(h)
    for h in (
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    )
]
REFERENCE_LEAF_HASHES = [leaf_hash(entry) for entry in REFERENCE_LEAVES]


# --- Independent reference implementation, literally the RFC's recursion -----------
def _k(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def ref_mth(d: Sequence[bytes]) -> bytes:
    if len(d) == 0:
        return hashlib.sha256(b"").digest()
    if len(d) == 1:
        return d[0]
    k = _k(len(d))
    return node_hash(ref_mth(d[:k]), ref_mth(d[k:]))


def ref_path(m: int, d: Sequence[bytes]) -> list[bytes]:
    if len(d) == 1:
        return []
    k = _k(len(d))
    if m < k:
        return [*ref_path(m, d[:k]), ref_mth(d[k:])]
    return [*ref_path(m - k, d[k:]), ref_mth(d[:k])]


def ref_subproof(m: int, d: Sequence[bytes], b: bool) -> list[bytes]:
    if m == len(d):
        return [] if b else [ref_mth(d)]
    k = _k(len(d))
    if m <= k:
        return [*ref_subproof(m, d[:k], b), ref_mth(d[k:])]
    return [*ref_subproof(m - k, d[k:], False), ref_mth(d[:k])]


def levelwise_root(d: Sequence[bytes]) -> bytes:
    """Bottom-up pairing with the odd node carried up: a second O(n) algorithm."""
    level = list(d)
    while len(level) > 1:
        paired = [node_hash(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            paired.append(level[-1])
        level = paired
    return level[0] if level else EMPTY_ROOT


def make_leaves(size: int, salt: bytes = b"") -> list[bytes]:
    return [leaf_hash(salt + i.to_bytes(4, "big")) for i in range(size)]


# --- 1. Conformance vectors --------------------------------------------------------
def test_vectors_present() -> None:
    # Guard against the parametrised tests passing vacuously.
    assert len(INCLUSION_FILES) > 0
    assert len(CONSISTENCY_FILES) > 0
    assert (DATA_DIR / "LICENSE").is_file()


@pytest.mark.parametrize("path", INCLUSION_FILES, ids=_id)
def test_inclusion_vector(path: Path) -> None:
    v = _load(path)
    ok = verify_inclusion(
        leaf_hash=_b64(v["leafHash"]),
        index=v["leafIdx"],
        tree_size=v["treeSize"],
        proof=v["proof"],
        root=_b64(v["root"]),
    )
    assert ok is (not v["wantErr"]), v["desc"]


@pytest.mark.parametrize("path", CONSISTENCY_FILES, ids=_id)
def test_consistency_vector(path: Path) -> None:
    v = _load(path)
    ok = verify_consistency(
        old_size=v["size1"],
        new_size=v["size2"],
        old_root=_b64(v["root1"]),
        new_root=_b64(v["root2"]),
        proof=v["proof"],
    )
    assert ok is (not v["wantErr"]), v["desc"]


def _happy(files: list[Path]) -> list[Path]:
    return [p for p in files if p.name == "happy-path.json" and "additional" not in p.parts]


@pytest.mark.parametrize("path", _happy(INCLUSION_FILES), ids=_id)
def test_generated_inclusion_proof_matches_vector(path: Path) -> None:
    v = _load(path)
    leaves = REFERENCE_LEAF_HASHES[: v["treeSize"]]
    assert _b64(v["root"]) == REFERENCE_ROOTS[v["treeSize"]]
    assert _b64(v["leafHash"]) == leaves[v["leafIdx"]]
    assert inclusion_proof(leaves, v["leafIdx"]) == v["proof"]


@pytest.mark.parametrize("path", _happy(CONSISTENCY_FILES), ids=_id)
def test_generated_consistency_proof_matches_vector(path: Path) -> None:
    v = _load(path)
    assert _b64(v["root1"]) == REFERENCE_ROOTS[v["size1"]]
    assert _b64(v["root2"]) == REFERENCE_ROOTS[v["size2"]]
    leaves = REFERENCE_LEAF_HASHES[: v["size2"]]
    assert consistency_proof(leaves, v["size1"]) == v["proof"]


# --- 2. Known roots ----------------------------------------------------------------
def test_empty_tree_root() -> None:
    assert root_from_leaf_hashes([]) == EMPTY_ROOT == hashlib.sha256(b"").digest()
    assert MerkleAccumulator().root() == EMPTY_ROOT
    assert MerkleAccumulator().size == 0


def test_hash_domain_separation() -> None:
    assert leaf_hash(b"") == hashlib.sha256(b"\x00").digest()
    assert node_hash(b"a", b"b") == hashlib.sha256(b"\x01ab").digest()


@pytest.mark.parametrize("size", range(1, 9))
def test_reference_tree_roots(size: int) -> None:
    leaves = REFERENCE_LEAF_HASHES[:size]
    assert root_from_leaf_hashes(leaves) == REFERENCE_ROOTS[size]
    acc = MerkleAccumulator()
    acc.extend(leaves)
    assert acc.size == size
    assert acc.root() == REFERENCE_ROOTS[size]


# --- Exhaustive comparison with the literal RFC recursion for small trees -------------
@pytest.mark.parametrize("size", range(1, 34))
def test_matches_rfc_recursion(size: int) -> None:
    leaves = make_leaves(size)
    root = ref_mth(leaves)
    assert root_from_leaf_hashes(leaves) == root
    for index in range(size):
        assert inclusion_proof(leaves, index) == ref_path(index, leaves)
    for old in range(1, size + 1):
        assert consistency_proof(leaves, old) == ref_subproof(old, leaves, True)


def test_accumulator_matches_for_every_size() -> None:
    leaves = make_leaves(1100, b"every-size")
    acc = MerkleAccumulator()
    assert acc.root() == root_from_leaf_hashes([])
    for i, h in enumerate(leaves, start=1):
        acc.append(h)
        assert acc.size == i
        assert acc.root() == levelwise_root(leaves[:i])


def test_large_tree_two_algorithms_agree() -> None:
    leaves = make_leaves(2**16 + 3, b"large")
    acc = MerkleAccumulator()
    acc.extend(iter(leaves))  # any iterable, e.g. a DB cursor
    assert acc.root() == root_from_leaf_hashes(leaves) == levelwise_root(leaves)


# --- 3. Properties -----------------------------------------------------------------
trees = st.builds(make_leaves, st.integers(min_value=1, max_value=300), st.binary(max_size=8))


def _flip_bit(proof: list[bytes], item: int, bit: int) -> list[bytes]:
    tampered = bytearray(proof[item])
    tampered[bit // 8] ^= 1 << (bit % 8)
    return [*proof[:item], bytes(tampered), *proof[item + 1 :]]


@given(trees)
def test_accumulator_equals_root(leaves: list[bytes]) -> None:
    acc = MerkleAccumulator()
    acc.extend(leaves)
    assert acc.size == len(leaves)
    assert acc.root() == root_from_leaf_hashes(leaves) == ref_mth(leaves)


@given(trees, st.data())
def test_inclusion_proofs_verify_and_detect_tampering(
    leaves: list[bytes], data: st.DataObject
) -> None:
    n = len(leaves)
    root = root_from_leaf_hashes(leaves)
    index = data.draw(st.integers(0, n - 1), label="index")
    proof = inclusion_proof(leaves, index)

    def check(*, idx: int = index, lh: bytes = leaves[index], prf: list[bytes] = proof) -> bool:
        return verify_inclusion(leaf_hash=lh, index=idx, tree_size=n, proof=prf, root=root)

    assert check()
    wrong = data.draw(st.sampled_from([i for i in range(n + 1) if i != index]), label="wrong")
    assert not check(idx=wrong)
    assert not check(lh=leaf_hash(b"not in the tree"))
    assert not verify_inclusion(
        leaf_hash=leaves[index], index=index, tree_size=n, proof=proof, root=node_hash(root, root)
    )
    if proof:
        item = data.draw(st.integers(0, len(proof) - 1), label="item")
        bit = data.draw(st.integers(0, 255), label="bit")
        assert not check(prf=_flip_bit(proof, item, bit))
        assert not check(prf=proof[:-1])
    assert not check(prf=[*proof, root])


@given(trees, st.data())
def test_consistency_proofs_verify_and_detect_tampering(
    leaves: list[bytes], data: st.DataObject
) -> None:
    n = len(leaves)
    old = data.draw(st.integers(1, n), label="old_size")
    old_root = root_from_leaf_hashes(leaves[:old])
    new_root = root_from_leaf_hashes(leaves)
    proof = consistency_proof(leaves, old)

    def check(*, o: bytes = old_root, nr: bytes = new_root, prf: list[bytes] = proof) -> bool:
        return verify_consistency(old_size=old, new_size=n, old_root=o, new_root=nr, proof=prf)

    assert check()
    assert not check(o=node_hash(old_root, old_root))
    assert not check(nr=node_hash(new_root, new_root))
    if proof:
        item = data.draw(st.integers(0, len(proof) - 1), label="item")
        bit = data.draw(st.integers(0, 255), label="bit")
        assert not check(prf=_flip_bit(proof, item, bit))
        assert not check(prf=proof[:-1])
    assert not check(prf=[*proof, new_root])
    others = [m for m in range(1, n) if m != old]
    if others:
        # A proof for one old size must not verify as a proof for another.
        other = data.draw(st.sampled_from(others), label="other old_size")
        assert not verify_consistency(
            old_size=other, new_size=n, old_root=old_root, new_root=new_root, proof=proof
        )


@settings(max_examples=50)
@given(trees, st.data())
def test_inclusion_in_old_tree_carries_over(leaves: list[bytes], data: st.DataObject) -> None:
    # A leaf proved in the old tree is also provable in the new one: what an
    # auditor checks after accepting a consistency proof.
    n = len(leaves)
    old = data.draw(st.integers(1, n), label="old_size")
    index = data.draw(st.integers(0, old - 1), label="index")
    for size in (old, n):
        assert verify_inclusion(
            leaf_hash=leaves[index],
            index=index,
            tree_size=size,
            proof=inclusion_proof(leaves[:size], index),
            root=root_from_leaf_hashes(leaves[:size]),
        )


# --- 4. Proof size -----------------------------------------------------------------
@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 7, 8, 9, 31, 100, 1023, 1024, 1025, 5000])
def test_inclusion_proof_is_logarithmic(n: int) -> None:
    leaves = make_leaves(n)
    bound = math.ceil(math.log2(n))
    for index in sorted({0, 1 % n, n // 3, n // 2, n - 2 if n > 1 else 0, n - 1}):
        assert len(inclusion_proof(leaves, index)) <= bound
    # Perfect trees: every path is exactly log2(n) long.
    if n & (n - 1) == 0:
        assert len(inclusion_proof(leaves, n - 1)) == bound


# --- Malformed input: verifiers return False, generators raise MerkleError ------------
H = leaf_hash(b"x")
GOOD_INCLUSION: dict[str, Any] = {
    "leaf_hash": REFERENCE_LEAF_HASHES[0],
    "index": 0,
    "tree_size": 8,
    "proof": inclusion_proof(REFERENCE_LEAF_HASHES, 0),
    "root": REFERENCE_ROOTS[8],
}
GOOD_CONSISTENCY: dict[str, Any] = {
    "old_size": 3,
    "new_size": 8,
    "old_root": REFERENCE_ROOTS[3],
    "new_root": REFERENCE_ROOTS[8],
    "proof": consistency_proof(REFERENCE_LEAF_HASHES, 3),
}


def test_good_baselines_verify() -> None:
    assert verify_inclusion(**GOOD_INCLUSION)
    assert verify_consistency(**GOOD_CONSISTENCY)


@pytest.mark.parametrize(
    "override",
    [
        {"index": 8},
        {"index": 9},
        {"index": -1},
        {"tree_size": -8},
        {"tree_size": 0},
        {"index": True},
        {"tree_size": 8.0},
        {"index": "0"},
        {"leaf_hash": REFERENCE_LEAF_HASHES[0][:31]},
        {"leaf_hash": "not bytes"},
        {"leaf_hash": None},
        {"root": None},
        {"proof": None},
        {"proof": b"".join(GOOD_INCLUSION["proof"])},
        {"proof": [p.hex() for p in GOOD_INCLUSION["proof"]]},
        {"proof": [*GOOD_INCLUSION["proof"][:-1], b""]},
        {"proof": []},
        {"proof": [H] * 64},
        {"index": 2**64, "tree_size": 2**64 + 1},
    ],
)
def test_verify_inclusion_rejects_malformed(override: dict[str, Any]) -> None:
    assert verify_inclusion(**{**GOOD_INCLUSION, **override}) is False


@pytest.mark.parametrize(
    "override",
    [
        {"old_size": 9},
        {"old_size": 8},  # equal sizes need equal roots and an empty proof
        {"old_size": 8, "old_root": REFERENCE_ROOTS[8]},  # ...and an empty proof
        {"old_size": 0},
        {"old_size": 0, "proof": []},
        {"old_size": 0, "new_size": 0, "proof": [], "new_root": REFERENCE_ROOTS[3]},
        {"old_size": -3},
        {"new_size": -8},
        {"new_size": 2},
        {"old_size": True},
        {"new_size": None},
        {"old_root": None},
        {"new_root": "root"},
        {"proof": None},
        {"proof": []},
        {"proof": GOOD_CONSISTENCY["proof"][:-1]},
        {"proof": [*GOOD_CONSISTENCY["proof"], H]},
        {"proof": [H, *GOOD_CONSISTENCY["proof"]]},
        {"proof": [p[:16] for p in GOOD_CONSISTENCY["proof"]]},
        {"proof": [object()]},
    ],
)
def test_verify_consistency_rejects_malformed(override: dict[str, Any]) -> None:
    assert verify_consistency(**{**GOOD_CONSISTENCY, **override}) is False


def test_verify_consistency_equal_sizes() -> None:
    for size in range(1, 9):
        root = REFERENCE_ROOTS[size]
        assert consistency_proof(REFERENCE_LEAF_HASHES[:size], size) == []
        assert verify_consistency(
            old_size=size, new_size=size, old_root=root, new_root=root, proof=[]
        )


def test_generators_reject_bad_arguments() -> None:
    leaves = REFERENCE_LEAF_HASHES
    for index in (-1, 8, 100, True):
        with pytest.raises(MerkleError):
            inclusion_proof(leaves, index)
    with pytest.raises(MerkleError):
        inclusion_proof([], 0)
    for old in (-1, 0, 9):
        with pytest.raises(MerkleError):
            consistency_proof(leaves, old)
    with pytest.raises(MerkleError):
        consistency_proof([], 0)
    acc = MerkleAccumulator()
    for bad in (b"", b"\x00" * 31, b"\x00" * 33):
        with pytest.raises(MerkleError):
            acc.append(bad)
    assert acc.size == 0
