"""What one referral costs the web process: database round trips pinned, no read-back, no
savepoint of intake's own, and a catalogue version that notices every kind of change."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from marketplace.matching import product_index
from partners.models import DeliveryMode, Product
from tests.factories import PartnerFactory, ProductFactory, referral_payload
from tests.marketplace.conftest import api_post

pytestmark = pytest.mark.django_db

# Round trips of one referral with an Idempotency-Key, two direct-post partners and a
# ping-post one (an auction), counted inside the test's transaction (where the request's
# own BEGIN and COMMIT show as a savepoint and its release). Before the outbox and the
# in-memory answer: 34, 10 of them savepoints. Now: the API key, the idempotency lookup,
# savepoint / release, the vault key check, the subject lookup, the subject's insert (ON
# CONFLICT DO NOTHING: no savepoint of its own), the consent text, the grant, the catalogue
# version, the dedupe lookup, the grant's recipients, the leads, the auction, the routing
# decision, the referral, the outbox message, the ledger entry, the idempotency record.
# (Ranking's inputs are cached per process, the consent receipt is built from memory.)
MAX_ROUND_TRIPS = 19


def _partners() -> None:
    for mode in (DeliveryMode.DIRECT_POST, DeliveryMode.DIRECT_POST, DeliveryMode.PING_POST):
        ProductFactory(
            partner=PartnerFactory(), delivery_mode=mode, ping_url="http://127.0.0.1:9/p"
        )


def test_one_referral_costs_at_most_the_pinned_round_trips(
    source_client: APIClient, django_capture_on_commit_callbacks: Any
) -> None:
    _partners()
    api_post(source_client, referral_payload(), **{"Idempotency-Key": "warm-up"})

    body = referral_payload(source_reference="A-1")
    with (
        django_capture_on_commit_callbacks(execute=False),
        CaptureQueriesContext(connection) as queries,
    ):
        response = api_post(source_client, body, **{"Idempotency-Key": "k"})

    assert response.status_code == 201, response.content
    statements = [query["sql"] for query in queries.captured_queries]
    print(f"round trips per referral: {len(statements)}")
    assert len(statements) <= MAX_ROUND_TRIPS, "\n".join(s[:100] for s in statements)
    referral_id = response.json()["id"]
    # Answered from memory: neither the referral nor its leads are read back.
    reads = [s for s in statements if s.startswith("SELECT")]
    read_back = ('FROM "marketplace_referral"', '"marketplace_lead"."referral_id"')
    assert not [s for s in reads if any(marker in s for marker in read_back)]
    # Duplicates are the unique constraint's to find: no pre-check by source_reference.
    assert not [s for s in reads if "source_reference" in s]
    # The idempotency record is one INSERT in the request's transaction, never updated.
    assert not [s for s in statements if s.startswith('UPDATE "partners_idempotencyrecord"')]
    assert len(response.json()["leads"]) == 2 and referral_id


@pytest.mark.parametrize("scope", ["matched_partners", "named_partners"])
def test_the_answer_from_memory_equals_the_stored_referral(
    source_client: APIClient, django_capture_on_commit_callbacks: Any, scope: str
) -> None:
    _partners()
    body = referral_payload()
    if scope == "named_partners":
        # Two named partners, one of them matched: the receipt names both, the leads one.
        named = [ProductFactory(partner=PartnerFactory()).partner_id, PartnerFactory().id]
        body["consent"] = {**body["consent"], "scope": scope, "partner_ids": named}
    with django_capture_on_commit_callbacks(execute=False):
        created = api_post(source_client, body, **{"Idempotency-Key": "k"})

    stored = source_client.get(f"/api/v1/referrals/{created.json()['id']}")

    assert stored.status_code == 200
    assert created.json() == stored.json()
    recipients = created.json()["consent_receipt"]["services"][0]["sharing"]["recipients"]
    if scope == "named_partners":
        assert recipients == sorted(str(p) for p in named)
        assert [lead["partner_id"] for lead in created.json()["leads"]] == [str(named[0])]
    else:
        assert sorted(lead["partner_id"] for lead in created.json()["leads"]) == recipients
        assert len(recipients) == 2


def test_a_change_through_a_bare_update_reaches_the_product_index() -> None:
    product = ProductFactory(partner=PartnerFactory())
    (box,) = [b for b in product_index.boxes() if b.product_id == product.id]
    assert box.apr_min == Decimal("0.1500")

    # Neither updated_at nor the number of products changes: the old aggregate missed it.
    Product.objects.filter(pk=product.pk).update(apr_min=Decimal("0.1000"))

    (box,) = [b for b in product_index.boxes() if b.product_id == product.id]
    assert box.apr_min == Decimal("0.1000")
