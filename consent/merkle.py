"""Merkle tree for the tamper-evident consent ledger (RFC 6962 / RFC 9162 §2.1).

Every consent event is a leaf in an append-only Merkle tree, exactly as in
Certificate Transparency:

* ``leaf_hash(entry) = SHA-256(0x00 || entry)`` and
  ``node_hash(l, r) = SHA-256(0x01 || l || r)``. The distinct prefixes provide
  domain separation: a leaf can never be passed off as an interior node (second
  preimage attack), so the tree shape is bound into the root.
* The Merkle Tree Hash of ``n`` leaves splits at ``k``, the largest power of two
  strictly less than ``n``. The left subtree is therefore always perfect and the
  shape depends only on ``n``, which is what lets a tree of size ``m`` be proved a
  prefix of a tree of size ``n`` (consistency proof).
* The empty tree hashes to ``SHA-256(b"")``.

Design notes:

* The verifiers (``verify_inclusion`` / ``verify_consistency``) follow the
  RFC 9162 §2.1.3.2 and §2.1.4.2 bit-twiddling algorithms. They run in
  O(log n), need no access to the tree, and return ``False`` rather than raise
  on *any* malformed input, because their inputs come from untrusted parties.
  Edge-case semantics match the transparency-dev/merkle conformance vectors
  (see ``verify_consistency``).
* The generators (``inclusion_proof`` / ``consistency_proof``) implement the
  RFC's recursive PATH / SUBPROOF definitions as loops. Every subtree hash they
  need covers a disjoint range of leaves, so one proof costs O(n) hashing and no
  recursion or list slicing, which is fine for a ledger of ~1M entries. Bad
  arguments to generators are programming errors and raise ``MerkleError``.
* ``MerkleAccumulator`` streams leaf hashes one at a time and keeps only the
  O(log n) "frontier" (the roots of the perfect subtrees that make up the tree,
  one per set bit of ``size``), so a verifier can recompute the root of a
  million-row table straight from a database cursor.

The module is pure Python and uses only ``hashlib``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence

__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "MerkleAccumulator",
    "MerkleError",
    "consistency_proof",
    "inclusion_proof",
    "leaf_hash",
    "node_hash",
    "root_from_leaf_hashes",
    "verify_consistency",
    "verify_inclusion",
]

HASH_SIZE = 32
_LEAF_PREFIX = b"\x00"
_NODE_PREFIX = b"\x01"
_sha256 = hashlib.sha256

EMPTY_ROOT: bytes = _sha256(b"").digest()
"""Root of the empty tree: SHA-256 of the empty string (RFC 6962 §2.1)."""


class MerkleError(Exception):
    """Invalid arguments passed to a tree-building or proof-generating function."""


def leaf_hash(entry: bytes) -> bytes:
    """Return ``SHA-256(0x00 || entry)``, the RFC 6962 hash of a leaf."""
    return _sha256(_LEAF_PREFIX + entry).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """Return ``SHA-256(0x01 || left || right)``, the RFC 6962 hash of an interior node."""
    # One concatenation + one hash call is measurably faster in CPython than
    # three .update() calls, and this is the inner loop for 1M-leaf trees.
    return _sha256(_NODE_PREFIX + left + right).digest()


def _check_leaf_hash(value: bytes) -> None:
    if not isinstance(value, bytes) or len(value) != HASH_SIZE:
        raise MerkleError(f"leaf hashes must be {HASH_SIZE}-byte bytes objects")


def _is_count(value: object) -> bool:
    # bool is an int subclass; True/False as a size or index is a caller bug.
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _is_proof(proof: object) -> bool:
    # Proof hashes come from untrusted parties and every node hash is exactly 32
    # bytes, so a wrong-length item can never belong to a valid proof. Rejecting
    # it before hashing is defence in depth: no variable-length input ever
    # reaches ``0x01 || left || right``.
    return (
        isinstance(proof, Sequence)
        and not isinstance(proof, (bytes, str))
        and all(isinstance(p, bytes) and len(p) == HASH_SIZE for p in proof)
    )


class MerkleAccumulator:
    """Incremental RFC 6962 tree builder holding O(log n) state.

    The tree of ``size`` leaves is the concatenation of perfect subtrees, one per
    set bit of ``size``, largest first; ``_frontier`` holds their roots. Appending
    a leaf works like incrementing a binary counter: equal-sized perfect subtrees
    merge while there is a carry.
    """

    __slots__ = ("_frontier", "_size")

    def __init__(self) -> None:
        self._frontier: list[bytes] = []
        self._size = 0

    @property
    def size(self) -> int:
        """Number of leaves appended so far."""
        return self._size

    def append(self, leaf_hash: bytes) -> None:
        """Append one leaf *hash* (not the raw entry; see :func:`leaf_hash`)."""
        _check_leaf_hash(leaf_hash)
        node = leaf_hash
        carry = self._size
        frontier = self._frontier
        # Each trailing 1-bit of the old size is a perfect subtree of the same
        # size as ``node``: merge them, exactly like carry propagation.
        while carry & 1:
            node = node_hash(frontier.pop(), node)
            carry >>= 1
        frontier.append(node)
        self._size += 1

    def extend(self, leaf_hashes: Iterable[bytes]) -> None:
        """Append many leaf hashes, e.g. straight from a database cursor."""
        for value in leaf_hashes:
            self.append(value)

    def root(self) -> bytes:
        """Return the Merkle Tree Hash of the leaves appended so far."""
        if not self._frontier:
            return EMPTY_ROOT
        # MTH splits at the largest power of two, so the smaller subtrees on the
        # right are combined first, and the largest (leftmost) one last.
        frontier = self._frontier
        node = frontier[-1]
        for i in range(len(frontier) - 2, -1, -1):
            node = node_hash(frontier[i], node)
        return node


def _subtree_root(leaf_hashes: Sequence[bytes], start: int, end: int) -> bytes:
    """MTH(D[start:end]) without copying the range (end > start)."""
    acc = MerkleAccumulator()
    append = acc.append
    for i in range(start, end):
        append(leaf_hashes[i])
    return acc.root()


def root_from_leaf_hashes(leaf_hashes: Sequence[bytes]) -> bytes:
    """Return the RFC 6962 Merkle Tree Hash of a list of leaf hashes.

    Uses n - 1 node hashes, O(log n) extra memory and no recursion. Raises
    :class:`MerkleError` if any leaf hash is not 32 bytes.
    """
    size = len(leaf_hashes)
    return _subtree_root(leaf_hashes, 0, size) if size else EMPTY_ROOT


def _split(size: int) -> int:
    """Largest power of two strictly less than ``size`` (size >= 2)."""
    return 1 << ((size - 1).bit_length() - 1)


def inclusion_proof(leaf_hashes: Sequence[bytes], index: int) -> list[bytes]:
    """Return the audit path PATH(index, D[n]) of RFC 9162 §2.1.3.1.

    Hashes are ordered from the leaf's sibling upwards, as verifiers expect.
    Raises :class:`MerkleError` unless ``0 <= index < len(leaf_hashes)``.
    """
    size = len(leaf_hashes)
    if not _is_count(index) or index >= size:
        raise MerkleError(f"leaf index {index!r} out of range for tree size {size}")
    # Walk down from the root; at each split record the hash of the sibling
    # subtree the leaf is *not* in. The recursion emits the deepest sibling
    # first, so the top-down list is reversed at the end.
    top_down: list[bytes] = []
    lo, hi = 0, size
    while hi - lo > 1:
        mid = lo + _split(hi - lo)
        if index < mid:
            top_down.append(_subtree_root(leaf_hashes, mid, hi))
            hi = mid
        else:
            top_down.append(_subtree_root(leaf_hashes, lo, mid))
            lo = mid
    top_down.reverse()
    return top_down


def consistency_proof(leaf_hashes: Sequence[bytes], old_size: int) -> list[bytes]:
    """Return PROOF(old_size, D[n]) of RFC 9162 §2.1.4.1.

    Proves the tree of the first ``old_size`` leaves is a prefix of the tree of
    all ``n = len(leaf_hashes)`` leaves. ``old_size == n`` gives the empty proof.
    Raises :class:`MerkleError` unless ``0 < old_size <= n``: a proof from the
    empty tree is meaningless (and rejected by :func:`verify_consistency`).
    """
    size = len(leaf_hashes)
    if not _is_count(old_size) or not 0 < old_size <= size:
        raise MerkleError(f"old size {old_size!r} out of range for tree size {size}")
    # Iterative SUBPROOF(m, D[lo:hi], b): ``m`` is relative to ``lo``; ``complete``
    # is the RFC's flag b, true while D[lo:lo+m] is still the whole old tree's
    # left edge, so the verifier already knows its hash (the old root).
    top_down: list[bytes] = []
    lo, hi, m, complete = 0, size, old_size, True
    while m != hi - lo:
        mid = lo + _split(hi - lo)
        if m <= mid - lo:
            top_down.append(_subtree_root(leaf_hashes, mid, hi))
            hi = mid
        else:
            top_down.append(_subtree_root(leaf_hashes, lo, mid))
            m -= mid - lo
            lo = mid
            complete = False
    proof = [] if complete else [_subtree_root(leaf_hashes, lo, hi)]
    proof.extend(reversed(top_down))
    return proof


def verify_inclusion(
    *, leaf_hash: bytes, index: int, tree_size: int, proof: Sequence[bytes], root: bytes
) -> bool:
    """Check an audit path with the RFC 9162 §2.1.3.2 algorithm.

    Returns ``False`` (never raises) for any malformed input, including
    ``index >= tree_size``, negative numbers and proofs of the wrong length.
    """
    if not (_is_count(index) and _is_count(tree_size) and index < tree_size):
        return False
    if not isinstance(leaf_hash, bytes) or len(leaf_hash) != HASH_SIZE:
        return False
    if not isinstance(root, bytes) or not _is_proof(proof):
        return False
    # fn walks the leaf's position and sn the last leaf's position up the tree;
    # where they coincide the path is on the right border, which has no right
    # siblings, so those levels are skipped.
    fn, sn = index, tree_size - 1
    node = leaf_hash
    for sibling in proof:
        if sn == 0:
            return False  # proof too long
        if fn & 1 or fn == sn:
            node = node_hash(sibling, node)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            node = node_hash(node, sibling)
        fn >>= 1
        sn >>= 1
    # sn == 0 means the proof reached the root: rejects too-short proofs.
    return sn == 0 and node == root


def verify_consistency(
    *, old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> bool:
    """Check a consistency proof with the RFC 9162 §2.1.4.2 algorithm.

    Semantics of the edge cases (matching the transparency-dev/merkle vectors):

    * ``old_size == new_size > 0``: valid iff the proof is empty and the roots
      are equal (the roots' contents are otherwise not checked).
    * ``old_size == 0``: always invalid, even ``0 -> 0`` and even with the empty
      root; RFC 9162 defines consistency only for ``0 < old_size``, and a proof
      from the empty tree proves nothing.
    * ``old_size > new_size``, negative sizes, an empty proof for
      ``old_size < new_size`` or a proof of the wrong length: invalid.

    Never raises on malformed input.
    """
    if not (_is_count(old_size) and _is_count(new_size) and 0 < old_size <= new_size):
        return False
    if not (isinstance(old_root, bytes) and isinstance(new_root, bytes) and _is_proof(proof)):
        return False
    if old_size == new_size:
        return len(proof) == 0 and old_root == new_root
    if len(proof) == 0:
        return False

    path = list(proof)
    # When the old tree is a perfect subtree of the new one, the proof omits its
    # hash because the verifier already holds it as old_root.
    if old_size & (old_size - 1) == 0:
        path.insert(0, old_root)
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    # ``old_node`` rebuilds the old root from left-hand siblings only, while
    # ``new_node`` also folds in right-hand siblings (the appended leaves).
    old_node = new_node = path[0]
    for sibling in path[1:]:
        if sn == 0:
            return False  # proof too long
        if fn & 1 or fn == sn:
            old_node = node_hash(sibling, old_node)
            new_node = node_hash(sibling, new_node)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            new_node = node_hash(new_node, sibling)
        fn >>= 1
        sn >>= 1
    return sn == 0 and old_node == old_root and new_node == new_root
