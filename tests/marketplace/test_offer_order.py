"""The source reads a referral's offers in the applicant's order (likeliest approval, then
cheapest), never by what partners pay, and is told every partner that received the
applicant's data."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
from rest_framework.test import APIClient

from marketplace import fee_cards, learning
from partners.models import Product
from tests.conftest import SimulatedPartner
from tests.factories import PartnerFactory, ProductFactory, referral_payload
from tests.marketplace.conftest import REFERRALS_URL, api_post

pytestmark = pytest.mark.django_db


def _product(name: str, *, apr: str, approve: str, cpl: str) -> Product:
    product = ProductFactory(
        partner=PartnerFactory(name=name),
        apr_min=Decimal(apr),
        expected_approve_rate=Decimal(approve),
    )
    fee_cards.set_fee_card(
        product_id=product.id,
        currency="CNY",
        cpl=Decimal(cpl),
        cpa=Decimal(0),
        cpf_rate=Decimal(0),
        cpf_min=Decimal(0),
        cpf_max=None,
        to_platform=Decimal(1),
    )
    return product


def test_offers_come_likeliest_approval_first_then_cheapest_never_by_fee(
    source_client: APIClient, django_capture_on_commit_callbacks: Any
) -> None:
    learning.inputs.invalidate()
    cheap_unlikely = _product("Cheap", apr="0.10", approve="0.20", cpl="80")  # pays most
    dear_likely = _product("Likely", apr="0.20", approve="0.80", cpl="10")
    dear_likely_too = _product("Likely too", apr="0.15", approve="0.80", cpl="5")

    with django_capture_on_commit_callbacks(execute=False):
        created = api_post(source_client, referral_payload(), **{"Idempotency-Key": "k"})
    read = source_client.get(f"{REFERRALS_URL}/{created.json()['id']}")

    want = [str(dear_likely_too.id), str(dear_likely.id), str(cheap_unlikely.id)]
    for body in (created.json(), read.json()):
        names = [lead["partner_name"] for lead in body["leads"]]
        assert names == ["Likely too", "Likely", "Cheap"], names
        likelihoods = [lead["approval_likelihood"] for lead in body["leads"]]
        assert likelihoods == pytest.approx([0.64, 0.64, 0.16])
    products = {lead["partner_id"]: lead for lead in read.json()["leads"]}
    assert len(products) == len(want)


def test_the_source_is_told_every_partner_that_received_the_data(
    source_client: APIClient,
    simulator_factory: Callable[..., SimulatedPartner],
    django_capture_on_commit_callbacks: Any,
) -> None:
    learning.inputs.invalidate()
    took = simulator_factory(accept_rate=1.0)
    refused = simulator_factory(accept_rate=0.0)  # rejects the post: it still got the data

    with django_capture_on_commit_callbacks(execute=True):
        created = api_post(source_client, referral_payload())
    assert created.json()["data_recipients"] == []  # nothing left the vault before commit

    body = source_client.get(f"{REFERRALS_URL}/{created.json()['id']}").json()

    got = {item["partner_id"]: item["partner_name"] for item in body["data_recipients"]}
    assert got == {
        str(took.partner.id): took.partner.name,
        str(refused.partner.id): refused.partner.name,
    }
    assert all(item["first_disclosed_at"] for item in body["data_recipients"])
