"""rotate_keys re-wraps every subject key under the active master key, in batches, while
the vault stays readable; afterwards the old key can go. It refuses plainly when it cannot."""

from __future__ import annotations

import io
import threading
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connections, transaction

from consent import crypto, master_keys, vault
from consent.models import PII_FIELDS, Subject
from tests.consent.conftest import MakeApplicant, new_b64_key


def _use_keys(settings: Any, value: str) -> None:
    settings.VAULT_MASTER_KEYS = value
    crypto._master_keys_for.cache_clear()
    vault._checked_key_ids.clear()


def _rotate(*args: str) -> str:
    out = io.StringIO()
    call_command("rotate_keys", *args, stdout=out)
    return out.getvalue()


def _store(make_applicant: MakeApplicant, n: int) -> dict[Any, dict[str, str]]:
    stored = {}
    for _ in range(n):
        applicant = make_applicant()
        with transaction.atomic():
            subject = vault.store_subject(applicant=applicant, is_sandbox=False)
        stored[subject.id] = applicant.as_strings()
    return stored


def _readable(expected: dict[Any, dict[str, str]]) -> None:
    for subject in Subject.objects.filter(id__in=list(expected)):
        assert vault._decrypt(subject, PII_FIELDS) == expected[subject.id]


@pytest.fixture
def old_key(settings: Any, vault_keys: dict[str, str]) -> str:
    return f"test-1:{vault_keys['master']}"


def test_rotation_rewraps_every_subject_and_the_old_key_can_then_go(
    db: None, settings: Any, old_key: str, make_applicant: MakeApplicant
) -> None:
    stored = _store(make_applicant, 7)
    new_key = f"test-2:{new_b64_key()}"
    _use_keys(settings, f"{new_key},{old_key}")
    _readable(stored)  # before: old subjects readable with the old key listed second

    out = _rotate("--batch-size", "3")

    assert "re-wrapped 7 subject key(s) under 'test-2' in 3 batch(es)" in out
    assert set(Subject.objects.values_list("key_id", flat=True)) == {"test-2"}
    _readable(stored)
    _use_keys(settings, new_key)  # the old key removed
    _readable(stored)
    assert "nothing to do" in _rotate()


def test_field_ciphertexts_are_untouched_by_rotation(
    db: None, settings: Any, old_key: str, make_applicant: MakeApplicant
) -> None:
    _store(make_applicant, 2)
    before = {s.id: (bytes(s.phone_enc), bytes(s.wrapped_key)) for s in Subject.objects.all()}
    _use_keys(settings, f"test-2:{new_b64_key()},{old_key}")

    _rotate()

    for subject in Subject.objects.all():
        phone, wrapped = before[subject.id]
        assert bytes(subject.phone_enc) == phone
        assert bytes(subject.wrapped_key) != wrapped


def test_rotation_with_only_the_active_key_in_use_has_nothing_to_do(
    db: None, old_key: str, make_applicant: MakeApplicant
) -> None:
    _store(make_applicant, 2)

    out = _rotate()

    assert out.startswith("nothing to do: every subject's key is already wrapped under")
    assert "'test-1': 2" in out


def test_erased_subjects_are_skipped(
    db: None, settings: Any, old_key: str, make_applicant: MakeApplicant
) -> None:
    stored = _store(make_applicant, 3)
    erased = next(iter(stored))
    Subject.objects.filter(id=erased).update(wrapped_key=None)
    _use_keys(settings, f"test-2:{new_b64_key()},{old_key}")

    assert "re-wrapped 2 subject key(s)" in _rotate()
    assert Subject.objects.get(id=erased).key_id == "test-1"
    assert Subject.objects.get(id=erased).wrapped_key is None


def test_subjects_under_an_unconfigured_key_are_refused(
    db: None, settings: Any, old_key: str, make_applicant: MakeApplicant
) -> None:
    _store(make_applicant, 2)
    _use_keys(settings, f"test-2:{new_b64_key()}")  # test-1 forgotten

    with pytest.raises(CommandError) as refused:
        _rotate()

    assert "'test-1'" in str(refused.value)
    assert "does not configure" in str(refused.value)
    assert set(Subject.objects.values_list("key_id", flat=True)) == {"test-1"}


def test_a_wrong_old_key_with_the_right_id_is_refused_and_changes_nothing(
    db: None, settings: Any, old_key: str, make_applicant: MakeApplicant
) -> None:
    _store(make_applicant, 2)
    _use_keys(settings, f"test-2:{new_b64_key()},test-1:{new_b64_key()}")

    with pytest.raises(CommandError, match="does not match the stored data"):
        _rotate()

    assert set(Subject.objects.values_list("key_id", flat=True)) == {"test-1"}


def test_a_wrong_active_key_is_refused_before_rewrapping_anything(
    db: None, settings: Any, old_key: str, make_applicant: MakeApplicant
) -> None:
    stored = _store(make_applicant, 2)
    with transaction.atomic():
        _use_keys(settings, f"test-2:{new_b64_key()},{old_key}")
        vault.ensure_master_key_usable()  # test-2's canary is stored with the right key
    _use_keys(settings, f"test-2:{new_b64_key()},{old_key}")  # ... then a different test-2

    with pytest.raises(CommandError, match="not the one this database was written with"):
        _rotate()

    _use_keys(settings, old_key)
    _readable(stored)


def test_malformed_keys_are_refused(db: None, settings: Any) -> None:
    _use_keys(settings, "test-1:not-base64")

    with pytest.raises(CommandError, match="VAULT_MASTER_KEYS must be"):
        _rotate()


def test_bad_batch_size_is_refused(db: None, old_key: str) -> None:
    with pytest.raises(CommandError, match="batch size must be at least 1"):
        _rotate("--batch-size", "0")


# --- While the platform keeps running (PostgreSQL) ----------------------------------------


@pytest.mark.postgres
def test_rotation_under_concurrent_writes_leaves_every_subject_readable(
    transactional_db: None, settings: Any, old_key: str, make_applicant: MakeApplicant
) -> None:
    stored = _store(make_applicant, 60)
    existing = list(stored)
    new_key = f"test-2:{new_b64_key()}"
    _use_keys(settings, f"{new_key},{old_key}")
    stop = threading.Event()
    errors: list[BaseException] = []
    written: dict[Any, dict[str, str]] = {}
    lock = threading.Lock()

    def writer(worker: int) -> None:
        """Intake traffic: refresh existing people (row lock + unwrap) and add new ones."""
        try:
            n = 0
            while not stop.is_set() and n < 200:
                n += 1
                with transaction.atomic():
                    if n % 2:
                        # Each writer refreshes its own third of the people.
                        subject = Subject.objects.get(id=existing[worker * 20 + (n // 2) % 20])
                        data = vault._decrypt(subject, PII_FIELDS)
                        applicant = make_applicant(
                            national_id=data["national_id"], employer=f"Employer {worker}-{n}"
                        )
                    else:
                        applicant = make_applicant()
                    subject = vault.store_subject(applicant=applicant, is_sandbox=False)
                with lock:
                    written[subject.id] = applicant.as_strings()
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(3)]
    for thread in threads:
        thread.start()
    try:
        report = master_keys.rotate_subject_keys(batch_size=5)
    finally:
        stop.set()
        for thread in threads:
            thread.join(60)

    assert errors == []
    assert report.rewrapped >= 1
    # Subjects created during the run are under the new key already; a second run (as the
    # command tells operators) finishes anything that was locked at the very end.
    master_keys.rotate_subject_keys(batch_size=5)
    assert set(Subject.objects.values_list("key_id", flat=True)) == {"test-2"}
    _use_keys(settings, new_key)
    _readable({**stored, **written})
