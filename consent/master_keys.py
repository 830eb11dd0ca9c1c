"""Master-key management for the vault: health checks and rotation.

Rotation re-wraps each subject's data key under the active (first) master key of
``VAULT_MASTER_KEYS``; field ciphertexts do not change, so it is cheap and safe to run while
the platform serves traffic. To rotate: put the new key first and keep the old one after it,
deploy, run ``manage.py rotate_keys``, then remove the old key.

Messages name key ids and counts only: never key material, never personal data.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from django.conf import settings
from django.db import transaction
from django.db.models import Count

from consent import crypto, vault
from consent.models import KeyCanary, Subject

BATCH_SIZE = 500


class RotationRefused(Exception):
    """Rotation cannot start or finish; the message says why, plainly."""


@dataclass
class RotationReport:
    active_key_id: str
    before: dict[str, int] = field(default_factory=dict)  # live subjects per key id
    rewrapped: int = 0
    batches: int = 0

    @property
    def nothing_to_do(self) -> bool:
        return set(self.before) <= {self.active_key_id}


def config_problems(raw: str | None = None) -> list[str]:
    """What is wrong with VAULT_MASTER_KEYS itself (no database needed)."""
    raw = settings.VAULT_MASTER_KEYS if raw is None else raw
    if not raw or not str(raw).strip():
        return ["VAULT_MASTER_KEYS is not set: the vault cannot encrypt or decrypt anything"]
    try:
        crypto.parse_master_keys(str(raw))
    except crypto.VaultKeyError as exc:
        return [str(exc)]
    return []


def subjects_per_key_id() -> dict[str, int]:
    """Live (not erased) subjects per master key id."""
    rows = (
        Subject.objects.filter(wrapped_key__isnull=False)
        .values_list("key_id")
        .annotate(n=Count("id"))
        .order_by()
    )
    return dict(rows)


def vault_key_problems() -> list[str]:
    """Every reason the configured keys cannot serve this database (empty: all good)."""
    problems = config_problems()
    if problems:
        return problems
    keys = crypto.master_keys()
    for canary in KeyCanary.objects.filter(key_id__in=list(keys.keys)):
        if not crypto.check_canary(canary.key_id, canary.sealed):
            role = "active " if canary.key_id == keys.active_id else ""
            problems.append(
                f"the configured {role}master key {canary.key_id!r} is not the one this "
                "database was written with (its canary does not decrypt)"
            )
    unknown = {key_id: n for key_id, n in subjects_per_key_id().items() if key_id not in keys.keys}
    for key_id, n in sorted(unknown.items()):
        problems.append(
            f"{n} subject(s) are wrapped under master key {key_id!r}, which VAULT_MASTER_KEYS "
            "does not configure: their data cannot be decrypted"
        )
    return problems


def rotate_subject_keys(
    *,
    batch_size: int = BATCH_SIZE,
    retries: int = 5,
    progress: Callable[[RotationReport], None] | None = None,
) -> RotationReport:
    """Re-wrap every live subject's data key under the active master key, in batches.

    Each batch is its own short transaction that locks its rows with SKIP LOCKED: a subject
    being updated by intake right now is left for a later pass instead of blocking it (the
    intake holds the same row lock while it unwraps, so it never sees a half-rotated key).
    Running it again is a no-op once every subject is under the active key.
    """
    if batch_size < 1:
        raise RotationRefused("the batch size must be at least 1")
    problems = config_problems()
    if problems:
        raise RotationRefused(problems[0])
    keys = crypto.master_keys()
    report = RotationReport(active_key_id=keys.active_id, before=subjects_per_key_id())
    unknown = sorted(k for k in report.before if k not in keys.keys)
    if unknown:
        raise RotationRefused(
            "subjects are wrapped under master key id(s) "
            + ", ".join(repr(k) for k in unknown)
            + " that VAULT_MASTER_KEYS does not configure: add them (after the active key) "
            "and run again"
        )
    if report.nothing_to_do:
        return report
    with transaction.atomic():
        # Never re-wrap everything under a key that is not this database's active key.
        vault.ensure_master_key_usable()
    for attempt in range(retries + 1):
        while moved := _rewrap_batch(keys.active_id, batch_size):
            report.rewrapped += moved
            report.batches += 1
            if progress is not None:
                progress(report)
        left = _left_to_rotate(keys.active_id)
        if not left:
            return report
        if attempt < retries:
            time.sleep(0.2 * (attempt + 1))  # rows locked by live traffic: try them again
    raise RotationRefused(
        f"{left} subject(s) stayed locked by other transactions and were not re-wrapped yet "
        f"({report.rewrapped} were); run rotate_keys again"
    )


def _left_to_rotate(active_id: str) -> int:
    return Subject.objects.filter(wrapped_key__isnull=False).exclude(key_id=active_id).count()


def _rewrap_batch(active_id: str, batch_size: int) -> int:
    with transaction.atomic():
        batch = list(
            Subject.objects.select_for_update(skip_locked=True)
            .filter(wrapped_key__isnull=False)
            .exclude(key_id=active_id)
            .only("id", "key_id", "wrapped_key")
            .order_by("id")[:batch_size]
        )
        for subject in batch:
            assert subject.wrapped_key is not None
            data_key = crypto.unwrap_data_key(subject.wrapped_key, subject.id, subject.key_id)
            subject.key_id, subject.wrapped_key = crypto.wrap_data_key(
                data_key, subject.id, active_id
            )
        if batch:
            Subject.objects.bulk_update(batch, ["key_id", "wrapped_key"])
        return len(batch)
