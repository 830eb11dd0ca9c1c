"""Values computed from routing's reference data, kept per process while the catalogue
version (``partners.models.CatalogueVersion``) stays the same: regulatory rule sets,
licences, which partners have suppression keys, the running experiments and the default
strategy. Every change to those tables moves the version (``partners.catalogue_triggers``),
and routing reads the version once per referral anyway (``marketplace.matching``), so the
referral's hot path reads them from memory instead of one query each.

Give the version *this referral* read: a value is served only for the version it was
computed at. Without a version (none read, or a flushed database without the row) the
value is computed and not kept.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any, TypeVar

T = TypeVar("T")

_entries: dict[Hashable, tuple[int, Any]] = {}


def cached(key: Hashable, *, version: int | None, compute: Callable[[], T]) -> T:
    if version is None:
        return compute()
    entry = _entries.get(key)
    if entry is not None and entry[0] == version:
        value: T = entry[1]
        return value
    value = compute()
    # (Two threads may both compute at a new version: the same answer, stored twice.)
    _entries[key] = (version, value)
    return value
