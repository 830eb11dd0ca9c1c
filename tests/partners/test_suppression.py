"""Suppression lists: a partner uploads keyed hashes of its customers' numbers through the
API (its own list, in its key's mode), and routing skips it for an applicant on the list,
computing the applicant's hashes inside consent, without any disclosure."""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

import pytest

from partners.models import KeyMode
from partners.registry import SuppressionEntry, SuppressionKey
from partners.suppression import normalise_national_id, normalise_phone
from tests.conftest import partner_client
from tests.factories import PartnerFactory

URL = "/api/v1/partner/suppression"
PHONE = "+86 138 0013 8000"  # referral_payload's applicant
NATIONAL_ID = "11010119900307123x"


def partner_hash(key: str, value: str) -> str:
    """What a partner computes, from the documented recipe (not from our code)."""
    return hmac.new(key.encode(), value.encode(), hashlib.sha256).hexdigest()


def new_key(client: Any) -> str:
    response = client.post(f"{URL}/key")
    assert response.status_code == 201, response.content
    key: str = response.json()["key"]
    return key


@pytest.mark.parametrize(
    ("written", "normalised"),
    [
        ("+86 138 0013 8000", "8613800138000"),
        ("13800138000", "8613800138000"),
        ("0086-138-0013-8000", "8613800138000"),
        ("8613800138000", "8613800138000"),
        ("+44 20 7946 0958", "442079460958"),
    ],
)
def test_phone_numbers_normalise_to_e164_digits(written: str, normalised: str) -> None:
    assert normalise_phone(written) == normalised


def test_national_ids_normalise_to_upper_case_without_spaces() -> None:
    assert normalise_national_id(" 110101 19900307123x ") == "11010119900307123X"


@pytest.mark.django_db
def test_partner_uploads_counts_and_empties_its_list() -> None:
    partner = PartnerFactory()
    client = partner_client(partner)
    key = new_key(client)
    hashes = [partner_hash(key, "8613800138000"), partner_hash(key, "11010119900307123X")]

    added = client.post(f"{URL}/hashes", {"hashes": hashes}, format="json")
    again = client.post(f"{URL}/hashes", {"hashes": hashes[:1]}, format="json")

    assert added.json() == {"added": 2, "count": 2}
    assert again.json() == {"added": 0, "count": 2}
    assert client.get(URL).json()["count"] == 2
    emptied = client.delete(f"{URL}/hashes")
    assert emptied.json()["count"] == 0
    assert not SuppressionEntry.objects.exists()


@pytest.mark.django_db
def test_invalid_hashes_are_refused_per_item_and_nothing_is_stored() -> None:
    client = partner_client(PartnerFactory())
    new_key(client)

    response = client.post(
        f"{URL}/hashes", {"hashes": ["a" * 64, "13800138000", "A" * 64]}, format="json"
    )

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert set(error["details"]) == {"hashes.1", "hashes.2"}
    assert not SuppressionEntry.objects.exists()


@pytest.mark.django_db
def test_uploading_before_making_a_key_is_a_conflict() -> None:
    response = partner_client(PartnerFactory()).post(
        f"{URL}/hashes", {"hashes": ["a" * 64]}, format="json"
    )

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "no_suppression_key"


@pytest.mark.django_db
def test_the_key_is_shown_once_stored_sealed_and_rotating_it_empties_the_list() -> None:
    client = partner_client(PartnerFactory())
    key = new_key(client)
    client.post(f"{URL}/hashes", {"hashes": [partner_hash(key, "x")]}, format="json")

    summary = client.get(URL).json()
    rotated = new_key(client)

    assert key not in str(summary)
    assert key.encode() not in bytes(SuppressionKey.objects.get().key_encrypted)
    assert rotated != key
    assert client.get(URL).json()["count"] == 0


@pytest.mark.django_db
def test_lists_are_per_partner_and_key_mode() -> None:
    mine, other = PartnerFactory(), PartnerFactory()
    live, sandbox = partner_client(mine), partner_client(mine, KeyMode.SANDBOX)
    new_key(live)
    new_key(sandbox)
    live.post(f"{URL}/hashes", {"hashes": ["a" * 64, "b" * 64]}, format="json")
    sandbox.post(f"{URL}/hashes", {"hashes": ["c" * 64]}, format="json")

    assert live.get(URL).json()["count"] == 2
    assert sandbox.get(URL).json()["count"] == 1
    assert partner_client(other).get(URL).json() == {"count": 0, "key_created_at": None}
    sandbox.delete(f"{URL}/hashes")
    assert live.get(URL).json()["count"] == 2


@pytest.mark.django_db
def test_source_keys_cannot_use_the_suppression_api(source_client: Any) -> None:
    assert source_client.get(URL).status_code in {401, 403}
