"""The personal-data vault: per-field encryption, blind indexes, dedupe and key handling."""

from __future__ import annotations

import base64
import hashlib
import hmac
import uuid
from typing import Any

import pytest
from cryptography.exceptions import InvalidTag
from django.db import transaction

from consent import crypto, vault
from consent.models import PII_FIELDS, KeyCanary, Subject
from tests.consent.conftest import MakeApplicant, new_b64_key

pytestmark = pytest.mark.django_db

ENC_COLUMNS = [f"{name}_enc" for name in PII_FIELDS]


def _reload(subject: Subject) -> Subject:
    return Subject.objects.get(pk=subject.pk)


def test_every_field_round_trips_through_the_vault(
    vault_keys: dict[str, str], make_applicant: MakeApplicant
) -> None:
    applicant = make_applicant()

    subject = vault.store_subject(applicant=applicant, is_sandbox=False)

    assert vault._decrypt(_reload(subject), PII_FIELDS) == applicant.as_strings()


def test_stored_columns_never_contain_the_plaintext(
    vault_keys: dict[str, str], make_applicant: MakeApplicant
) -> None:
    applicant = make_applicant(full_name="Zhang Wei", employer="Plaintext Detector Ltd.")
    subject = vault.store_subject(applicant=applicant, is_sandbox=False)

    row = Subject.objects.filter(pk=subject.pk).values(*ENC_COLUMNS).get()

    plaintexts = [value.encode() for value in applicant.as_strings().values()]
    for column in ENC_COLUMNS:
        stored = bytes(row[column])
        # nonce (12) + ciphertext (len of value) + GCM tag (16): something was really sealed.
        value = applicant.as_strings()[column.removesuffix("_enc")].encode()
        assert len(stored) == crypto.NONCE_BYTES + len(value) + 16
        for plaintext in plaintexts:
            assert plaintext not in stored, column


def test_same_value_encrypts_differently_each_time(
    vault_keys: dict[str, str], make_applicant: MakeApplicant
) -> None:
    one = vault.store_subject(applicant=make_applicant(full_name="Li Na"), is_sandbox=False)
    two = vault.store_subject(applicant=make_applicant(full_name="Li Na"), is_sandbox=False)

    assert bytes(_reload(one).full_name_enc) != bytes(_reload(two).full_name_enc)


def test_same_national_id_differently_written_dedupes_and_refreshes_values(
    vault_keys: dict[str, str], make_applicant: MakeApplicant
) -> None:
    first = vault.store_subject(
        applicant=make_applicant(national_id="11010119900307123x", phone="13800138000"),
        is_sandbox=False,
    )
    again = vault.store_subject(
        applicant=make_applicant(
            national_id=" 110101 19900307 123X ",
            phone="+86 139 0000 0001",
            address="2 New Street, Futian, Shenzhen",
        ),
        is_sandbox=False,
    )

    assert again.id == first.id
    assert Subject.objects.count() == 1
    stored = _reload(first)
    assert vault._decrypt(stored, ("phone", "address")) == {
        "phone": "+86 139 0000 0001",
        "address": "2 New Street, Futian, Shenzhen",
    }
    assert stored.phone_index == crypto.blind_index("phone", "13900000001")


def test_a_different_national_id_is_a_different_subject(
    vault_keys: dict[str, str], make_applicant: MakeApplicant
) -> None:
    one = vault.store_subject(
        applicant=make_applicant(national_id="110101199003071234"), is_sandbox=False
    )
    two = vault.store_subject(
        applicant=make_applicant(national_id="110101199003071235"), is_sandbox=False
    )

    assert one.id != two.id


@pytest.mark.parametrize(
    "written",
    ["+86 138 0013 8000", "0086 138 0013 8000", "+8613800138000", "138-0013-8000", "13800138000"],
)
def test_phone_formats_share_one_blind_index(vault_keys: dict[str, str], written: str) -> None:
    expected = crypto.blind_index("phone", "13800138000")

    assert crypto.blind_index("phone", crypto.normalise_phone(written)) == expected


def test_a_different_phone_has_a_different_blind_index(vault_keys: dict[str, str]) -> None:
    assert crypto.blind_index("phone", crypto.normalise_phone("+86 138 0013 8001")) != (
        crypto.blind_index("phone", crypto.normalise_phone("+86 138 0013 8000"))
    )


def test_blind_index_is_a_keyed_hmac_not_a_plain_hash(vault_keys: dict[str, str]) -> None:
    index = crypto.blind_index("national_id", "110101199003071234")

    assert index not in {
        hashlib.sha256(b"110101199003071234").hexdigest(),
        hashlib.sha256(b"national_id:110101199003071234").hexdigest(),
    }
    key = base64.b64decode(vault_keys["blind"])
    assert index == hmac.new(key, b"national_id:110101199003071234", "sha256").hexdigest()


def test_blind_index_changes_with_the_blind_index_key(
    vault_keys: dict[str, str], settings: Any
) -> None:
    before = crypto.blind_index("phone", "13800138000")

    settings.BLIND_INDEX_KEY = new_b64_key()

    assert crypto.blind_index("phone", "13800138000") != before


def test_blind_index_is_separated_by_field(vault_keys: dict[str, str]) -> None:
    # A phone number must not match a national id that happens to have the same digits.
    assert crypto.blind_index("phone", "13800138000") != crypto.blind_index(
        "national_id", "13800138000"
    )


def test_ciphertext_moved_to_another_column_fails_to_decrypt(
    vault_keys: dict[str, str], make_applicant: MakeApplicant
) -> None:
    subject = vault.store_subject(applicant=make_applicant(), is_sandbox=False)
    Subject.objects.filter(pk=subject.pk).update(full_name_enc=_reload(subject).phone_enc)

    with pytest.raises(InvalidTag):
        vault._decrypt(_reload(subject), ("full_name",))
    # The columns that were not touched still decrypt: the failure is the moved value's.
    assert vault._decrypt(_reload(subject), ("phone",))["phone"] == "+86 138 0013 8000"


def test_ciphertext_moved_to_another_subject_fails_to_decrypt(
    vault_keys: dict[str, str], make_applicant: MakeApplicant
) -> None:
    alice = vault.store_subject(applicant=make_applicant(full_name="Alice"), is_sandbox=False)
    bob = vault.store_subject(applicant=make_applicant(full_name="Bob"), is_sandbox=False)
    Subject.objects.filter(pk=bob.pk).update(full_name_enc=_reload(alice).full_name_enc)

    with pytest.raises(InvalidTag):
        vault._decrypt(_reload(bob), ("full_name",))


def test_whole_row_of_ciphertext_moved_with_its_wrapped_key_fails_to_decrypt(
    vault_keys: dict[str, str], make_applicant: MakeApplicant
) -> None:
    # The data key is wrapped with the subject id as associated data, so even copying the
    # wrapped key along with the fields does not make another row readable.
    alice = _reload(
        vault.store_subject(applicant=make_applicant(full_name="Alice"), is_sandbox=False)
    )
    bob = vault.store_subject(applicant=make_applicant(full_name="Bob"), is_sandbox=False)
    copied = {column: getattr(alice, column) for column in ENC_COLUMNS}
    Subject.objects.filter(pk=bob.pk).update(
        wrapped_key=alice.wrapped_key, key_id=alice.key_id, **copied
    )

    with pytest.raises(crypto.VaultKeyError):
        vault._decrypt(_reload(bob), ("full_name",))


def test_field_ciphertext_is_bound_to_the_subject_id_even_under_the_same_data_key() -> None:
    alice, bob = uuid.uuid4(), uuid.uuid4()
    data_key = crypto.new_data_key()
    sealed = crypto.encrypt_field(data_key, alice, "phone", "13800138000")

    assert crypto.decrypt_field(data_key, alice, "phone", sealed) == "13800138000"
    with pytest.raises(InvalidTag):
        crypto.decrypt_field(data_key, bob, "phone", sealed)


def test_wrong_master_key_under_the_same_id_refuses_to_write(
    vault_keys: dict[str, str], settings: Any, make_applicant: MakeApplicant
) -> None:
    vault.store_subject(applicant=make_applicant(), is_sandbox=False)
    assert KeyCanary.objects.filter(key_id="test-1").count() == 1
    wrong_key = new_b64_key()
    settings.VAULT_MASTER_KEYS = f"test-1:{wrong_key}"
    vault._checked_key_ids.clear()

    with pytest.raises(crypto.VaultKeyError) as raised:
        vault.store_subject(applicant=make_applicant(), is_sandbox=False)

    message = str(raised.value)
    assert "'test-1'" in message
    assert "not the one this database was written with" in message
    assert wrong_key not in message
    assert vault_keys["master"] not in message
    assert Subject.objects.count() == 1
    assert KeyCanary.objects.count() == 1


def test_rolled_back_first_write_does_not_skip_the_key_check_later(
    vault_keys: dict[str, str], make_applicant: MakeApplicant
) -> None:
    # The first intake of a process may fail and roll back its canary: the next write must
    # still store one, or a wrong key after a restart would go unnoticed.
    with pytest.raises(RuntimeError, match="intake failed"), transaction.atomic():
        vault.store_subject(applicant=make_applicant(), is_sandbox=False)
        raise RuntimeError("intake failed")
    assert not KeyCanary.objects.exists()

    vault.store_subject(applicant=make_applicant(), is_sandbox=False)

    assert KeyCanary.objects.filter(key_id="test-1").count() == 1


def test_subject_wrapped_under_a_key_no_longer_configured_cannot_be_read(
    vault_keys: dict[str, str], settings: Any, make_applicant: MakeApplicant
) -> None:
    subject = vault.store_subject(applicant=make_applicant(), is_sandbox=False)
    settings.VAULT_MASTER_KEYS = f"test-2:{new_b64_key()}"

    with pytest.raises(crypto.VaultKeyError, match="'test-1' is not configured"):
        vault._decrypt(_reload(subject), ("full_name",))


def test_rotated_master_key_keeps_old_subjects_readable_and_wraps_new_ones(
    vault_keys: dict[str, str], settings: Any, make_applicant: MakeApplicant
) -> None:
    old = vault.store_subject(
        applicant=make_applicant(full_name="Before Rotation"), is_sandbox=False
    )
    settings.VAULT_MASTER_KEYS = f"test-2:{new_b64_key()},test-1:{vault_keys['master']}"

    new = vault.store_subject(
        applicant=make_applicant(full_name="After Rotation"), is_sandbox=False
    )

    assert (_reload(old).key_id, _reload(new).key_id) == ("test-1", "test-2")
    assert vault._decrypt(_reload(old), ("full_name",)) == {"full_name": "Before Rotation"}
    assert vault._decrypt(_reload(new), ("full_name",)) == {"full_name": "After Rotation"}


def test_erased_subject_cannot_be_decrypted(
    vault_keys: dict[str, str], make_applicant: MakeApplicant
) -> None:
    subject = vault.store_subject(applicant=make_applicant(), is_sandbox=False)
    Subject.objects.filter(pk=subject.pk).update(wrapped_key=None)

    with pytest.raises(crypto.VaultKeyError, match="erased"):
        vault._decrypt(_reload(subject), ("full_name",))


@pytest.mark.parametrize(
    "raw",
    ["", "no-separator", "k1:not base64!", f"k1:{base64.b64encode(b'short').decode()}"],
)
def test_malformed_master_keys_are_refused_with_a_plain_message(raw: str) -> None:
    with pytest.raises(crypto.VaultKeyError, match="VAULT_MASTER_KEYS"):
        crypto.parse_master_keys(raw)


def test_find_subject_ids_by_phone_and_by_national_id(
    vault_keys: dict[str, str], make_applicant: MakeApplicant
) -> None:
    alice = vault.store_subject(
        applicant=make_applicant(national_id="110101199003071234", phone="+86 138 0013 8000"),
        is_sandbox=False,
    )
    bob = vault.store_subject(
        applicant=make_applicant(national_id="110101199003075678", phone="13900000001"),
        is_sandbox=False,
    )

    assert vault.find_subject_ids(phone="0086 13800138000", is_sandbox=False) == [alice.id]
    assert vault.find_subject_ids(phone="+86 139 0000 0001", is_sandbox=False) == [bob.id]
    assert vault.find_subject_ids(national_id=" 110101 199003075678 ", is_sandbox=False) == [bob.id]
    assert vault.find_subject_ids(
        national_id="110101199003071234", phone="13800138000", is_sandbox=False
    ) == [alice.id]
    assert (
        vault.find_subject_ids(
            national_id="110101199003071234", phone="13900000001", is_sandbox=False
        )
        == []
    )
    assert vault.find_subject_ids(phone="13700000000", is_sandbox=False) == []
