"""The vault under concurrent intakes of one person: PostgreSQL only (SQLite serialises
writers, so the race never happens there)."""

from __future__ import annotations

import time
import uuid

import pytest
from django.db import transaction

from consent import vault
from consent.models import Subject
from tests.concurrency import run_concurrently
from tests.consent.conftest import MakeApplicant

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def test_one_new_person_stored_four_times_at_once_is_one_readable_subject(
    make_applicant: MakeApplicant,
) -> None:
    national_id = "110101199003070042"
    employers = [f"Employer {i}" for i in range(4)]
    with transaction.atomic():
        # Someone else first: the master key's canary is written (and remembered) now, or
        # its own insert would line the four up one behind the other.
        vault.store_subject(applicant=make_applicant(), is_sandbox=False)

    def store(employer: str) -> uuid.UUID:
        with transaction.atomic():
            subject = vault.store_subject(
                applicant=make_applicant(national_id=national_id, employer=employer),
                is_sandbox=False,
            )
            # Hold the new row uncommitted a moment: the others' inserts meet it and wait.
            time.sleep(0.3)
            return subject.id

    ids = run_concurrently(*(lambda e=e: store(e) for e in employers))

    assert not [i for i in ids if isinstance(i, BaseException)], ids
    (stored,) = Subject.objects.filter(
        pk__in=vault.find_subject_ids(national_id=national_id, is_sandbox=False)
    )
    assert set(ids) == {stored.id}
    # Whoever lost the insert re-encrypted its values under the winner's data key: the row
    # holds one of the employers, and every field decrypts.
    values = vault._decrypt(stored, ("employer", "national_id"))
    assert values["employer"] in employers
    assert values["national_id"] == national_id
