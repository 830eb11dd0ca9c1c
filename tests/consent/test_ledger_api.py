"""The ledger proofs API: signed checkpoints for any key, an entry and its inclusion proof
only for the source or partner it concerns (else 404), consistency proofs between
checkpoints. Every proof is checked with consent.merkle against the signed root."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from django.db import transaction
from django.utils import timezone
from rest_framework.test import APIClient

from consent import gate, grants, ledger, proofs, vault
from consent.grants import ConsentEvidence
from consent.merkle import leaf_hash, verify_consistency, verify_inclusion
from consent.models import Checkpoint, ConsentGrant, ConsentText, GrantScope, LedgerEntry
from partners.models import Partner
from tests.conftest import partner_client
from tests.consent.conftest import MakeApplicant, MakeGrant
from tests.factories import PartnerFactory, TrafficSourceFactory


@pytest.fixture(autouse=True)
def _empty_subtree_cache() -> Iterator[None]:
    proofs.clear_cache()
    yield
    proofs.clear_cache()


@dataclass
class World:
    partner: Partner
    other_partner: Partner
    own_grant: ConsentGrant
    foreign_grant: ConsentGrant

    def seq(self, kind: str, **data: str) -> int:
        for entry in LedgerEntry.objects.filter(kind=kind).order_by("seq"):
            document = json.loads(entry.canonical)["data"]
            if all(document.get(k) == v for k, v in data.items()):
                return entry.seq
        raise AssertionError(f"no {kind} entry with {data}")


@pytest.fixture
def world(
    source_client: APIClient,
    make_grant: MakeGrant,
    make_applicant: MakeApplicant,
    consent_text: ConsentText,
) -> World:
    """Grants of our source and of another one, disclosures to two partners, and
    checkpoints before and after the last entries."""
    partner, other_partner = PartnerFactory(), PartnerFactory()
    own = make_grant(partners=[partner])
    gate.disclose(grant_id=own.id, partner_id=partner.id, purpose="loan_referral", reference="x")
    ledger.make_checkpoint()
    now = timezone.now()
    with transaction.atomic():
        foreign = grants.record_grant(
            subject=vault.store_subject(applicant=make_applicant(), is_sandbox=False),
            source=TrafficSourceFactory(),
            evidence=ConsentEvidence(
                text_version=consent_text.version,
                collected_at=now - timedelta(minutes=1),
                expires_at=now + timedelta(days=30),
                channel="web",
                method="checkbox",
                scope=GrantScope.NAMED_PARTNERS,
                named_partner_ids=(other_partner.id,),
            ),
        )
    gate.disclose(
        grant_id=foreign.id, partner_id=other_partner.id, purpose="loan_referral", reference="y"
    )
    grants.withdraw(grant_id=own.id, channel="api")
    ledger.make_checkpoint()
    return World(partner, other_partner, own, foreign)


def _public_key() -> Ed25519PublicKey:
    return Ed25519PublicKey.from_public_bytes(ledger.public_key_bytes())


def _assert_signed(document: dict[str, Any]) -> bytes:
    root = base64.b64decode(document["root_hash"])
    assert root.hex() == document["root_hash_hex"]
    body = (
        f"decline-marketplace/consent-ledger\n{document['tree_size']}\n"
        f"{document['root_hash']}\n{document['signed_at']}\n"
    )
    assert document["signed_body"] == body
    _public_key().verify(base64.b64decode(document["signature"]), body.encode())
    return root


def _assert_included(body: dict[str, Any]) -> None:
    root = _assert_signed(body["checkpoint"])
    proof = body["inclusion_proof"]
    assert proof["leaf_index"] == body["seq"] == json.loads(body["canonical"])["seq"]
    assert proof["tree_size"] == body["checkpoint"]["tree_size"]
    leaf = leaf_hash(body["canonical"].encode())
    assert leaf.hex() == body["leaf_hash"]
    assert verify_inclusion(
        leaf_hash=leaf,
        index=proof["leaf_index"],
        tree_size=proof["tree_size"],
        proof=[bytes.fromhex(h) for h in proof["hashes"]],
        root=root,
    )


# --- Checkpoints ---------------------------------------------------------------------------


def test_latest_checkpoint_carries_the_exact_signed_body(
    world: World, source_client: APIClient
) -> None:
    response = source_client.get("/api/v1/ledger/checkpoints/latest")

    assert response.status_code == 200
    body = response.json()
    assert body["tree_size"] == LedgerEntry.objects.count()
    assert body["key_id"] == ledger.public_key_id()
    _assert_signed(body)


def test_checkpoints_are_listed_newest_first_to_partners_too(world: World) -> None:
    response = partner_client(world.other_partner).get("/api/v1/ledger/checkpoints")

    assert response.status_code == 200
    sizes = [c["tree_size"] for c in response.json()["results"]]
    assert len(sizes) == 2 and sizes[0] > sizes[1]


def test_no_checkpoint_yet_is_a_404(source_client: APIClient) -> None:
    assert source_client.get("/api/v1/ledger/checkpoints/latest").status_code == 404


def test_the_ledger_api_needs_an_api_key(world: World) -> None:
    assert APIClient().get("/api/v1/ledger/checkpoints/latest").status_code == 401


# --- Entries ---------------------------------------------------------------------------------


def test_source_reads_its_grant_entry_with_a_proof_against_the_latest_checkpoint(
    world: World, source_client: APIClient
) -> None:
    seq = world.seq("consent.granted", receipt_id=str(world.own_grant.id))

    response = source_client.get(f"/api/v1/ledger/entries/{seq}")

    assert response.status_code == 200
    body = response.json()
    assert body["kind"] == "consent.granted"
    assert body["checkpoint"]["tree_size"] == LedgerEntry.objects.count()
    _assert_included(body)


def test_entry_proof_against_an_earlier_checkpoint(world: World, source_client: APIClient) -> None:
    first = min(c.tree_size for c in Checkpoint.objects.all())
    seq = world.seq("data.disclosed", receipt_id=str(world.own_grant.id))

    response = source_client.get(f"/api/v1/ledger/entries/{seq}?tree_size={first}")

    assert response.status_code == 200
    assert response.json()["checkpoint"]["tree_size"] == first
    _assert_included(response.json())


def test_partner_reads_the_disclosure_that_names_it(world: World) -> None:
    seq = world.seq("data.disclosed", partner_id=str(world.partner.id))

    response = partner_client(world.partner).get(f"/api/v1/ledger/entries/{seq}")

    assert response.status_code == 200
    _assert_included(response.json())


def test_entries_of_others_are_404_like_missing_ones(
    world: World, source_client: APIClient
) -> None:
    foreign_grant = world.seq("consent.granted", receipt_id=str(world.foreign_grant.id))
    foreign_disclosure = world.seq("data.disclosed", partner_id=str(world.other_partner.id))
    own_disclosure = world.seq("data.disclosed", partner_id=str(world.partner.id))
    text_published = world.seq("consent_text.published")
    missing = source_client.get("/api/v1/ledger/entries/100000")

    assert missing.status_code == 404
    for seq in (foreign_grant, foreign_disclosure, text_published):
        response = source_client.get(f"/api/v1/ledger/entries/{seq}")
        assert (response.status_code, response.json()) == (404, missing.json()), seq
    other = partner_client(world.other_partner)
    for seq in (own_disclosure, world.seq("consent.granted", receipt_id=str(world.own_grant.id))):
        assert other.get(f"/api/v1/ledger/entries/{seq}").status_code == 404, seq


def test_entry_not_covered_by_the_checkpoint_is_404(world: World, source_client: APIClient) -> None:
    first = min(c.tree_size for c in Checkpoint.objects.all())
    withdrawn = world.seq("consent.withdrawn", receipt_id=str(world.own_grant.id))
    with transaction.atomic():  # an entry of ours after the last checkpoint
        later = ledger.append(kind="test.event", data={"receipt_id": str(world.own_grant.id)})

    assert withdrawn >= first
    url = f"/api/v1/ledger/entries/{withdrawn}"
    assert source_client.get(url).status_code == 200
    assert source_client.get(f"{url}?tree_size={first}").status_code == 404
    assert source_client.get(f"{url}?tree_size=2").status_code == 404  # no such checkpoint
    assert source_client.get(f"/api/v1/ledger/entries/{later.seq}").status_code == 404


def test_malformed_tree_size_is_a_400(world: World, source_client: APIClient) -> None:
    seq = world.seq("consent.granted", receipt_id=str(world.own_grant.id))

    response = source_client.get(f"/api/v1/ledger/entries/{seq}?tree_size=abc")

    assert response.status_code == 400
    assert response.json()["error"]["details"] == {"tree_size": ["must be a positive integer"]}


# --- Consistency -----------------------------------------------------------------------------


def test_consistency_proof_between_checkpoints_verifies(
    world: World, source_client: APIClient
) -> None:
    second, first = (
        c["tree_size"] for c in source_client.get("/api/v1/ledger/checkpoints").json()["results"]
    )

    response = source_client.get(f"/api/v1/ledger/consistency?first={first}&second={second}")

    assert response.status_code == 200
    body = response.json()
    old_root, new_root = _assert_signed(body["first"]), _assert_signed(body["second"])
    proof = [bytes.fromhex(h) for h in body["hashes"]]
    assert proof
    assert verify_consistency(
        old_size=first, new_size=second, old_root=old_root, new_root=new_root, proof=proof
    )
    assert not verify_consistency(
        old_size=first, new_size=second, old_root=new_root, new_root=new_root, proof=proof
    )


def test_consistency_of_a_checkpoint_with_itself_is_the_empty_proof(
    world: World, source_client: APIClient
) -> None:
    size = LedgerEntry.objects.count()

    response = source_client.get(f"/api/v1/ledger/consistency?first={size}&second={size}")

    assert response.status_code == 200
    assert response.json()["hashes"] == []


@pytest.mark.parametrize(
    ("query", "status"),
    [
        ("", 400),
        ("first=1", 400),
        ("first=0&second=5", 400),
        ("first=x&second=5", 400),
        ("first=9&second=3", 400),
        ("first=3&second=100000", 404),
    ],
)
def test_bad_consistency_requests(
    world: World, source_client: APIClient, query: str, status: int
) -> None:
    response = source_client.get(f"/api/v1/ledger/consistency?{query}")

    assert response.status_code == status
    assert "error" in response.json()
