"""The personal-data vault: encrypt on the way in, deduplicate by blind index.

Reading personal data back is private to ``consent``: ``consent.gate.disclose`` is the only
way out, and it writes the disclosure log in the same transaction.

Key mode separates subjects like a tenant would: one subject per person *and mode*
(``Subject.is_sandbox``). Sandbox traffic may carry a real person's numbers; it must never
refresh that person's live data, join their live dedupe windows or be erased with them by
accident. So every lookup here names its mode: ``store_subject`` deduplicates within one
mode only, and ``find_subject_ids`` looks in one mode or, said explicitly, in both.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import TypeVar

from django.db import connections, router, transaction
from django.db.models.constants import OnConflict
from django.db.models.sql import InsertQuery

from consent import crypto
from consent.models import PII_FIELDS, KeyCanary, Subject

_checked_key_ids: set[str] = set()


@dataclass(frozen=True)
class ApplicantData:
    full_name: str
    phone: str
    national_id: str
    birth_date: date
    monthly_income: Decimal
    employer: str
    address: str

    def as_strings(self) -> dict[str, str]:
        return {name: str(getattr(self, name)) for name in PII_FIELDS}


def ensure_master_key_usable() -> None:
    """Refuse to write data we could not read back (missing or wrong master key)."""
    keys = crypto.master_keys()
    if keys.active_id in _checked_key_ids:
        return
    canary = KeyCanary.objects.filter(key_id=keys.active_id).first()
    if canary is None:
        # Another process may store its canary first: then that one must match ours too.
        canary, _created = KeyCanary.objects.get_or_create(
            key_id=keys.active_id, defaults={"sealed": crypto.seal_canary(keys.active_id)}
        )
    if not crypto.check_canary(keys.active_id, canary.sealed):
        raise crypto.VaultKeyError(
            f"the configured master key {keys.active_id!r} is not the one this database was "
            "written with: refusing to write data that could not be read back"
        )
    # Remember it only once committed: a canary written by a transaction that then rolls
    # back (a rejected intake) must be written again, or a wrong key goes unnoticed later.
    transaction.on_commit(functools.partial(_checked_key_ids.add, keys.active_id))


def _encrypt_into(subject: Subject, data_key: bytes, applicant: ApplicantData) -> None:
    for name, value in applicant.as_strings().items():
        setattr(subject, f"{name}_enc", crypto.encrypt_field(data_key, subject.id, name, value))
    subject.phone_index = crypto.blind_index("phone", crypto.normalise_phone(applicant.phone))


def store_subject(*, applicant: ApplicantData, is_sandbox: bool) -> Subject:
    """The vault record for this person in this mode (``is_sandbox``: sent with a sandbox
    key), created or refreshed with the latest values. The other mode's record of the same
    person is neither found nor touched."""
    ensure_master_key_usable()
    national_index = crypto.blind_index(
        "national_id", crypto.normalise_national_id(applicant.national_id)
    )
    for _attempt in range(2):
        # FOR NO KEY UPDATE: the row is locked against concurrent intakes of this person
        # (their dedupe windows) but not against the deferred foreign-key checks of rows
        # that point at it (a disclosure, a lead): a FOR UPDATE here made every disclosure
        # of this person wait on an intake, which deadlocked (marketplace.locks).
        existing = (
            Subject.objects.select_for_update(no_key=True)
            .filter(national_id_index=national_index, is_sandbox=is_sandbox, erased_at__isnull=True)
            .first()
        )
        if existing is not None:
            assert existing.wrapped_key is not None
            data_key = crypto.unwrap_data_key(existing.wrapped_key, existing.id, existing.key_id)
            _encrypt_into(existing, data_key, applicant)
            existing.save()
            return existing
        subject = Subject(id=uuid.uuid4(), national_id_index=national_index, is_sandbox=is_sandbox)
        data_key = crypto.new_data_key()
        subject.key_id, subject.wrapped_key = crypto.wrap_data_key(data_key, subject.id)
        _encrypt_into(subject, data_key, applicant)
        if _insert_unless_taken(subject):
            return subject
        # The same person arrived concurrently and committed first: take the row that won.
    raise RuntimeError("could not store the subject after a concurrent insert")


def _insert_unless_taken(subject: Subject) -> bool:
    """INSERT the new subject unless another row holds its person and mode (``ON CONFLICT DO
    NOTHING``; SQLite: ``INSERT OR IGNORE``); whether it was inserted. A concurrent insert of
    the same person is waited for, as a unique index does. Instead of catching the unique
    violation in a savepoint: that cost two more round trips on every new person."""
    using = router.db_for_write(Subject)
    query = InsertQuery(Subject, on_conflict=OnConflict.IGNORE)
    query.insert_values(Subject._meta.local_concrete_fields, [subject])
    inserted = 0
    with connections[using].cursor() as cursor:
        for statement, params in query.get_compiler(using=using).as_sql():
            cursor.execute(statement, params)
            inserted += max(cursor.rowcount, 0)
    subject._state.adding, subject._state.db = False, using
    return inserted == 1


def _decrypt(subject: Subject, fields: tuple[str, ...]) -> dict[str, str]:
    """Private to consent: callers outside the app go through ``gate.disclose``."""
    if subject.wrapped_key is None:
        raise crypto.VaultKeyError("this subject was erased: nothing can be decrypted")
    data_key = crypto.unwrap_data_key(subject.wrapped_key, subject.id, subject.key_id)
    return {
        name: crypto.decrypt_field(data_key, subject.id, name, getattr(subject, f"{name}_enc"))
        for name in fields
    }


def find_subject_ids(
    *, phone: str = "", national_id: str = "", is_sandbox: bool | None
) -> list[uuid.UUID]:
    """Look up subjects by blind index; no decryption. Nothing to look for finds nothing
    (never every subject). ``is_sandbox``: the mode to look in, or ``None`` for both
    (compliance and erasure: a sandbox record holding a real person's numbers is still
    that person's data); live subjects come first."""
    if not crypto.normalise_phone(phone) and not crypto.normalise_national_id(national_id):
        return []
    query = Subject.objects.order_by("is_sandbox", "created_at", "id")
    if is_sandbox is not None:
        query = query.filter(is_sandbox=is_sandbox)
    if national_id:
        query = query.filter(
            national_id_index=crypto.blind_index(
                "national_id", crypto.normalise_national_id(national_id)
            )
        )
    if phone:
        query = query.filter(phone_index=crypto.blind_index("phone", crypto.normalise_phone(phone)))
    return list(query.values_list("id", flat=True))


K = TypeVar("K")


def keyed_digests(
    *,
    subject_id: uuid.UUID,
    keys: Mapping[K, str],
    normalisers: Mapping[str, Callable[[str], str]],
    digest: Callable[[str, str], str],
) -> dict[K, frozenset[str]]:
    """Per key, ``digest(key, normalise(value))`` of each of the subject's fields named in
    ``normalisers`` (e.g. phone, national ID): keyed hashes for matching partners' lists
    (``consent.suppression``). The values themselves never leave this function. An erased
    subject, or a field that normalises to nothing, gives no digest."""
    subject = Subject.objects.filter(pk=subject_id).first()
    if subject is None or subject.wrapped_key is None:
        return {key_id: frozenset() for key_id in keys}
    values = _decrypt(subject, tuple(normalisers))
    normalised = [n for name, normalise in normalisers.items() if (n := normalise(values[name]))]
    return {key_id: frozenset(digest(key, v) for v in normalised) for key_id, key in keys.items()}
