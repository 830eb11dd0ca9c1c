"""The partner's profile and products through the API: own rows only, the full credit box,
another partner's product a 404 in the one error shape."""

from __future__ import annotations

import uuid

from partners.holds import place_hold
from partners.models import HoldReason, KeyMode, Partner, PartnerStatus
from tests.conftest import partner_client
from tests.factories import ProductFactory

PRODUCTS = "/api/v1/partner/products"


def test_me_shows_the_partner_status_and_the_calling_keys_mode(partner: Partner):
    partner.status = PartnerStatus.SANDBOX
    partner.save()
    place_hold(partner_id=partner.pk, reason=HoldReason.CREDIT_LIMIT)

    body = partner_client(partner, KeyMode.SANDBOX).get("/api/v1/partner/me").json()

    assert body["id"] == str(partner.id)
    assert body["status"] == "sandbox"
    assert [hold["reason"] for hold in body["holds"]] == ["credit_limit"]
    assert body["key"]["mode"] == "sandbox"
    assert "key_hash" not in body["key"]
    assert partner_client(partner).get("/api/v1/partner/me").json()["key"]["mode"] == "live"


def test_product_list_shows_only_the_partners_own_products(partner, other_partner):
    second = ProductFactory(partner=partner, name="Second")

    response = partner_client(partner).get(PRODUCTS)

    assert response.status_code == 200
    ids = {row["id"] for row in response.json()["results"]}
    assert ids == {str(partner.products.get(name="Own loan").id), str(second.id)}
    assert "Their loan" not in response.content.decode()


def test_product_detail_shows_the_full_credit_box(partner: Partner):
    product = partner.products.get()
    product.regions = ["CN-GD", "CN-SC"]
    product.employment_types = ["employed"]
    product.daily_cap = 100
    product.save()

    body = partner_client(partner).get(f"{PRODUCTS}/{product.id}").json()

    assert body["min_amount"] == "1000.00" and body["max_amount"] == "50000.00"
    assert body["risk_tiers"] == ["R3", "R4", "R5", "R6"]
    assert body["regions"] == ["CN-GD", "CN-SC"]
    assert body["apr_min"] == "0.1500" and body["apr_max"] == "0.2200"
    assert body["employment_types"] == ["employed"]
    assert body["daily_cap"] == 100
    assert body["delivery_mode"] == "direct_post"
    assert body["post_timeout_ms"] == 2000
    assert "partner" not in body


def test_another_partners_product_is_a_404_like_a_missing_one(partner, other_partner):
    client = partner_client(partner)
    theirs = client.get(f"{PRODUCTS}/{other_partner.products.get().id}")
    missing = client.get(f"{PRODUCTS}/{uuid.uuid4()}")

    assert theirs.status_code == missing.status_code == 404
    assert theirs.json() == missing.json()
    assert theirs.json()["error"]["code"] == "not_found"


def test_source_keys_cannot_read_partner_products(partner, source_client):
    response = source_client.get(PRODUCTS)
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "permission_denied"
