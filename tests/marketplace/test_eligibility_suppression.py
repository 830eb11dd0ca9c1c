"""Routing skips a partner whose suppression list holds the applicant (reason code
``suppressed``); the applicant's keyed hashes are computed inside consent, no disclosure is
written, and the check costs a fixed number of queries."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from consent.models import Disclosure
from consent.suppression import suppressing_partners
from marketplace.models import Referral
from marketplace.routing import screen_boxes
from partners.models import KeyMode, Partner
from tests.conftest import partner_client
from tests.factories import ProductFactory
from tests.partners.test_suppression import URL, new_key, partner_hash

NATIONAL_ID = "11010119900307123x"


def suppress(partner: Partner, value: str, mode: str = KeyMode.LIVE) -> None:
    client = partner_client(partner, mode)
    key = new_key(client)
    response = client.post(f"{URL}/hashes", {"hashes": [partner_hash(key, value)]}, format="json")
    assert response.status_code == 200, response.content


@pytest.mark.django_db
def test_a_suppressing_partner_is_skipped_with_the_suppressed_code(
    make_referral: Callable[..., Referral],
) -> None:
    by_phone, by_id, unrelated, sandbox_only = (ProductFactory() for _ in range(4))
    suppress(by_phone.partner, "8613800138000")
    suppress(by_id.partner, "11010119900307123X")
    suppress(unrelated.partner, "8613900000000")
    suppress(sandbox_only.partner, "8613800138000", KeyMode.SANDBOX)

    referral = make_referral(national_id=NATIONAL_ID)

    received = set(referral.leads.values_list("partner_id", flat=True))
    assert received == {unrelated.partner_id, sandbox_only.partner_id}
    reasons = {r.partner_id: r.reasons for r in screen_boxes(referral, referral.grant).rejected}
    assert reasons[by_phone.partner_id] == ("suppressed",)
    assert reasons[by_id.partner_id] == ("suppressed",)
    # Nothing left the vault: no disclosure was written for the check.
    assert not Disclosure.objects.exists()


@pytest.mark.django_db
def test_the_check_costs_three_queries_whatever_the_number_of_partners(
    make_referral: Callable[..., Referral],
) -> None:
    products = [ProductFactory() for _ in range(6)]
    for product in products:
        suppress(product.partner, "8613900000000")
    referral = make_referral()
    partner_ids = {product.partner_id for product in products}

    with CaptureQueriesContext(connection) as queries:
        hits = suppressing_partners(
            subject_id=referral.subject_id, partner_ids=partner_ids, is_sandbox=False
        )

    assert hits == set()
    # The candidates' keys, the subject, and one query for every candidate's hits.
    assert len(queries) == 3


@pytest.mark.django_db
def test_no_key_among_the_candidates_costs_one_query(
    make_referral: Callable[..., Referral],
) -> None:
    product = ProductFactory()
    referral = make_referral()

    with CaptureQueriesContext(connection) as queries:
        hits = suppressing_partners(
            subject_id=referral.subject_id, partner_ids={product.partner_id}, is_sandbox=False
        )

    assert hits == set()
    assert len(queries) == 1
