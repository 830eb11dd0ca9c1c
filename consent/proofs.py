"""Inclusion and consistency proofs over the stored consent ledger (RFC 9162 §2.1.3, §2.1.4).

``consent.merkle`` builds proofs from a list of every leaf hash, which at a million entries
means reading the whole table for each request. Here the proof's subtree hashes come from
the database in blocks of ``2**BLOCK_LEVEL`` leaves instead:

* every node of an RFC 9162 tree is either a *perfect* subtree aligned on its own size or
  lies on the right border (at most one per level). A perfect subtree of a log only ever
  appended to never changes once complete, so its hash is cached for the life of the
  process (``_SUBTREE_CACHE``, keyed by level and position; about 2n/1024 hashes);
* a proof therefore reads at most the leaf hashes of the proved entry's block and of the
  tree's last, partial block, plus, the first time, one streamed pass over the blocks
  whose roots are not cached yet (never all rows into memory: a block at a time).

Proofs are computed from the *stored* leaf hashes, exactly as checkpoints are: a proof over
a tampered row simply fails to verify against the signed root, which is the point.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, MutableMapping, Sequence
from dataclasses import dataclass
from typing import cast

from consent.merkle import HASH_SIZE, MerkleAccumulator, MerkleError, node_hash
from consent.models import LedgerEntry

BLOCK_LEVEL = 10  # blocks of 1024 leaves: one short index range scan each
_CACHE_LIMIT = 1 << 20  # cached subtree hashes (~100 MB worst case) before starting over

# (level, position) -> hash of the perfect subtree of 2**level leaves at position * 2**level.
_SUBTREE_CACHE: dict[tuple[int, int], bytes] = {}

# Reads the stored leaf hashes of the leaves [start, end) as (seq, hex hash) in seq order.
LeafReader = Callable[[int, int], Iterable[tuple[int, str]]]


class ProofUnavailable(Exception):
    """The stored ledger cannot produce this proof (an entry is missing or malformed)."""


@dataclass(frozen=True)
class InclusionProof:
    leaf_index: int
    tree_size: int
    hashes: list[bytes]


def clear_cache() -> None:
    """Forget cached subtree hashes (tests and benchmarks that rebuild the ledger table)."""
    _SUBTREE_CACHE.clear()


def _split(size: int) -> int:
    """Largest power of two strictly less than ``size`` (size >= 2)."""
    return 1 << ((size - 1).bit_length() - 1)


def _perfect_level(lo: int, hi: int) -> int | None:
    """``log2(hi - lo)`` when [lo, hi) is a perfect, aligned subtree, else None."""
    size = hi - lo
    if size & (size - 1) or lo % size:
        return None
    return size.bit_length() - 1


def inclusion_ranges(index: int, tree_size: int) -> list[tuple[int, int]]:
    """The leaf ranges whose subtree hashes make PATH(index, D[tree_size]), leaf upwards."""
    if not 0 <= index < tree_size:
        raise MerkleError(f"leaf index {index} out of range for tree size {tree_size}")
    top_down: list[tuple[int, int]] = []
    lo, hi = 0, tree_size
    while hi - lo > 1:
        mid = lo + _split(hi - lo)
        if index < mid:
            top_down.append((mid, hi))
            hi = mid
        else:
            top_down.append((lo, mid))
            lo = mid
    top_down.reverse()
    return top_down


def consistency_ranges(old_size: int, new_size: int) -> list[tuple[int, int]]:
    """The leaf ranges whose subtree hashes make PROOF(old_size, D[new_size]), in order."""
    if not 0 < old_size <= new_size:
        raise MerkleError(f"old size {old_size} out of range for tree size {new_size}")
    top_down: list[tuple[int, int]] = []
    lo, hi, m, complete = 0, new_size, old_size, True
    while m != hi - lo:
        mid = lo + _split(hi - lo)
        if m <= mid - lo:
            top_down.append((mid, hi))
            hi = mid
        else:
            top_down.append((lo, mid))
            m -= mid - lo
            lo = mid
            complete = False
    ranges = [] if complete else [(lo, hi)]
    ranges.extend(reversed(top_down))
    return ranges


class SubtreeHasher:
    """Merkle Tree Hashes of ranges of the stored log, from cached blocks and block reads.

    One instance serves one request (it keeps the leaves it read); the cache of perfect
    subtrees is shared. ``block_level`` is a parameter so tests can use tiny blocks.
    """

    def __init__(
        self,
        read: LeafReader,
        *,
        block_level: int | None = None,
        cache: MutableMapping[tuple[int, int], bytes] | None = None,
    ) -> None:
        self._read = read
        # Read at call time, so a test can shrink BLOCK_LEVEL for every hasher.
        self._level = BLOCK_LEVEL if block_level is None else block_level
        self._block = 1 << self._level
        self._cache = _SUBTREE_CACHE if cache is None else cache
        self._leaves: dict[int, list[bytes]] = {}  # block number -> leaf hashes read
        self._tree_size = 0

    # --- planning: which blocks must be read ---------------------------------------------

    def _plan(self, lo: int, hi: int, roots: set[int], leaves: set[int]) -> None:
        level = _perfect_level(lo, hi)
        if level is not None and level >= self._level:
            if (level, lo >> level) in self._cache:
                return
            if level == self._level:
                roots.add(lo >> level)
                return
        if hi - lo <= self._block and lo >> self._level == (hi - 1) >> self._level:
            leaves.add(lo >> self._level)  # inside one block: needs that block's leaves
            return
        mid = lo + _split(hi - lo)
        self._plan(lo, mid, roots, leaves)
        self._plan(mid, hi, roots, leaves)

    def prefetch(self, ranges: Iterable[tuple[int, int]], tree_size: int) -> None:
        """Read, in as few streamed queries as possible, every block the ranges need."""
        self._tree_size = max(self._tree_size, tree_size)
        roots: set[int] = set()
        leaves: set[int] = set()
        for lo, hi in ranges:
            self._plan(lo, hi, roots, leaves)
        leaves -= self._leaves.keys()
        wanted = sorted(roots | leaves)
        run_start = 0
        for i, block in enumerate(wanted):
            if i + 1 == len(wanted) or wanted[i + 1] != block + 1:
                self._read_blocks(wanted[run_start], block + 1, tree_size, keep=leaves)
                run_start = i + 1

    def _read_blocks(self, first: int, stop: int, tree_size: int, keep: set[int]) -> None:
        start, end = first << self._level, min(stop << self._level, tree_size)
        block, current = first, []
        expected = start
        for seq, hex_hash in self._read(start, end):
            if seq != expected:
                raise ProofUnavailable(f"ledger entry {expected} is missing")
            try:
                value = bytes.fromhex(hex_hash)
            except ValueError:
                value = b""
            if len(value) != HASH_SIZE:
                raise ProofUnavailable(f"ledger entry {seq} has a malformed leaf hash")
            current.append(value)
            expected += 1
            if expected & (self._block - 1) == 0 or expected == end:
                self._finish_block(block, current, keep)
                block, current = block + 1, []
        if expected != end:
            raise ProofUnavailable(f"ledger entry {expected} is missing")

    def _finish_block(self, block: int, leaves: list[bytes], keep: set[int]) -> None:
        if len(leaves) == self._block:
            acc = MerkleAccumulator()
            acc.extend(leaves)
            self._remember((self._level, block), acc.root())
        if block in keep:
            self._leaves[block] = leaves

    def _remember(self, key: tuple[int, int], value: bytes) -> None:
        if len(self._cache) >= _CACHE_LIMIT:
            self._cache.clear()
        self._cache[key] = value

    # --- hashing ----------------------------------------------------------------------------

    def root(self, lo: int, hi: int) -> bytes:
        """MTH(D[lo:hi]) for a range of the tree (after ``prefetch`` of that range)."""
        level = _perfect_level(lo, hi)
        if level is not None and level >= self._level:
            cached = self._cache.get((level, lo >> level))
            if cached is not None:
                return cached
        if hi - lo <= self._block and lo >> self._level == (hi - 1) >> self._level:
            block = lo >> self._level
            if block not in self._leaves:
                # Not prefetched, or its cached root was dropped meanwhile: read it now.
                self._read_blocks(block, block + 1, max(self._tree_size, hi), keep={block})
            leaves = self._leaves[block]
            offset = lo - (block << self._level)
            acc = MerkleAccumulator()
            acc.extend(leaves[offset : offset + hi - lo])
            value = acc.root()
        else:
            mid = lo + _split(hi - lo)
            value = node_hash(self.root(lo, mid), self.root(mid, hi))
        if level is not None and level >= self._level:
            self._remember((level, lo >> level), value)
        return value


def inclusion_proofs(
    hasher: SubtreeHasher, indices: Sequence[int], tree_size: int
) -> Iterator[InclusionProof]:
    """An audit path per leaf index against the tree of ``tree_size`` leaves."""
    plans = [(index, inclusion_ranges(index, tree_size)) for index in indices]
    hasher.prefetch((r for _, ranges in plans for r in ranges), tree_size)
    for index, ranges in plans:
        yield InclusionProof(index, tree_size, [hasher.root(lo, hi) for lo, hi in ranges])


def consistency_proof(hasher: SubtreeHasher, old_size: int, new_size: int) -> list[bytes]:
    """PROOF(old_size, D[new_size]) of RFC 9162 §2.1.4.1."""
    ranges = consistency_ranges(old_size, new_size)
    hasher.prefetch(ranges, new_size)
    return [hasher.root(lo, hi) for lo, hi in ranges]


def tree_root(hasher: SubtreeHasher, tree_size: int) -> bytes:
    """MTH of the first ``tree_size`` stored leaves (non-empty)."""
    if tree_size <= 0:
        raise MerkleError("the empty tree has no stored leaves")
    hasher.prefetch([(0, tree_size)], tree_size)
    return hasher.root(0, tree_size)


# --- The stored ledger ---------------------------------------------------------------------


def _stored_leaf_hashes(start: int, end: int) -> Iterator[tuple[int, str]]:
    """Sequenced entries only (the range excludes pending ones, whose seq is NULL)."""
    rows = (
        LedgerEntry.objects.filter(seq__gte=start, seq__lt=end)
        .order_by("seq")
        .values_list("seq", "leaf_hash")
    )
    yield from cast(Iterator[tuple[int, str]], rows.iterator(chunk_size=20_000))


def ledger_hasher() -> SubtreeHasher:
    """A hasher over the stored ledger; use one per request or export."""
    return SubtreeHasher(_stored_leaf_hashes)


def entry_inclusion_proofs(*, seqs: Sequence[int], tree_size: int) -> list[InclusionProof]:
    """Audit paths of stored entries against the tree of ``tree_size`` entries."""
    return list(inclusion_proofs(ledger_hasher(), seqs, tree_size))


def checkpoint_consistency_proof(*, first: int, second: int) -> list[bytes]:
    """Proof that the stored tree of ``first`` entries is a prefix of that of ``second``."""
    if first == second:
        return []
    return consistency_proof(ledger_hasher(), first, second)
