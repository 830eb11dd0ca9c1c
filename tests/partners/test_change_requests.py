"""Partners propose product changes; each field is checked like the model (400 naming the
field, nothing stored); an operator's approval applies the change in one transaction and
bumps the product's updated_at (matching reloads), a rejection carries a note."""

from __future__ import annotations

from decimal import Decimal
from functools import partial
from typing import Any

import pytest
from django.contrib.auth import get_user_model

from partners import products
from partners.models import ChangeRequestStatus, Partner, Product, ProductChangeRequest
from tests.concurrency import run_concurrently
from tests.conftest import partner_client

CHANGE_REQUESTS = "/api/v1/partner/change-requests"


def propose_url(product: Product) -> str:
    return f"/api/v1/partner/products/{product.id}/change-requests"


@pytest.fixture
def product(partner: Partner) -> Product:
    return partner.products.get()


@pytest.fixture
def operator(db: None) -> Any:
    return get_user_model().objects.create_user("ops", is_staff=True)


def test_a_valid_proposal_is_stored_pending_and_the_product_is_unchanged(partner, product):
    before = product.updated_at

    response = partner_client(partner).post(
        propose_url(product),
        {"max_amount": "80000.00", "risk_tiers": ["R3", "R4", "R5", "R6", "R7"], "note": "Q1"},
        format="json",
    )

    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["status"] == "pending"
    assert body["changes"] == {
        "max_amount": "80000.00",
        "risk_tiers": ["R3", "R4", "R5", "R6", "R7"],
    }
    assert body["note"] == "Q1"
    product.refresh_from_db()
    assert product.max_amount == Decimal("50000.00")
    assert product.updated_at == before
    stored = ProductChangeRequest.objects.get()
    assert stored.partner_id == partner.id


def test_values_equal_to_the_current_ones_are_not_proposed(partner, product):
    response = partner_client(partner).post(
        propose_url(product), {"min_amount": "1000.00", "dedupe_days": 7}, format="json"
    )
    assert response.json()["changes"] == {"dedupe_days": 7}


INVALID = [
    ({}, "non_field_errors"),
    ({"min_amount": "1000.00"}, "non_field_errors"),  # changes nothing
    ({"min_amount": "0"}, "min_amount"),
    ({"min_amount": "-5"}, "min_amount"),
    ({"max_amount": "999999999.00"}, "max_amount"),
    ({"max_amount": "500.00"}, "max_amount"),  # below the current minimum
    ({"min_amount": "60000.00"}, "min_amount"),  # above the current maximum
    ({"min_term_months": 0}, "min_term_months"),
    ({"min_term_months": 36}, "min_term_months"),  # above the current maximum (24)
    ({"max_term_months": 121}, "max_term_months"),
    ({"risk_tiers": []}, "risk_tiers"),
    ({"risk_tiers": ["R9"]}, "risk_tiers.0"),
    ({"risk_tiers": ["R3", "R3"]}, "risk_tiers"),
    ({"regions": ["Guangdong"]}, "regions.0"),
    ({"regions": ["CN-GD"], "excluded_regions": ["CN-GD"]}, "excluded_regions"),
    ({"min_age": 16}, "min_age"),
    ({"max_age": 19}, "max_age"),  # below the current minimum age (20)
    ({"employment_types": ["astronaut"]}, "employment_types.0"),
    ({"purposes": ["Not A Tag!"]}, "purposes.0"),
    ({"apr_min": "24"}, "apr_min"),  # a percentage where a fraction is expected
    ({"apr_min": "-0.01"}, "apr_min"),
    ({"apr_max": "0.1000"}, "apr_max"),  # below the current minimum APR
    ({"apr_min": "0.3000", "apr_max": "0.3500"}, "apr_min"),  # above the APR cap
    ({"delivery_mode": "carrier_pigeon"}, "delivery_mode"),
    ({"delivery_mode": "ping_post"}, "delivery_mode"),  # without a ping URL
    ({"post_url": ""}, "post_url"),  # direct post needs a post URL
    ({"post_url": "ftp://lender.example.com/x"}, "post_url"),
    ({"post_url": "not a url"}, "post_url"),
    ({"ping_timeout_ms": 10}, "ping_timeout_ms"),
    ({"post_timeout_ms": 60_000}, "post_timeout_ms"),
    ({"daily_cap": 0}, "daily_cap"),
    ({"daily_cap": 500, "monthly_cap": 100}, "monthly_cap"),
    ({"dedupe_days": 400}, "dedupe_days"),
    ({"partner": "00000000-0000-0000-0000-000000000000"}, "partner"),
    ({"id": "00000000-0000-0000-0000-000000000000"}, "id"),
    ({"updated_at": "2020-01-01T00:00:00Z"}, "updated_at"),
]


@pytest.mark.parametrize(("body", "field"), INVALID, ids=[f for _, f in INVALID])
def test_invalid_proposals_are_a_400_naming_the_field_and_store_nothing(
    partner, product, body, field
):
    response = partner_client(partner).post(propose_url(product), body, format="json")

    assert response.status_code == 400, response.json()
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert field in error["details"], error
    assert not ProductChangeRequest.objects.exists()


def test_delivery_urls_on_private_networks_are_refused_where_not_allowed(
    partner, product, settings
):
    settings.ALLOW_PRIVATE_PARTNER_URLS = False
    client = partner_client(partner)
    for url in ("https://127.0.0.1/post", "https://10.1.2.3/post", "http://lender.example.com/"):
        response = client.post(propose_url(product), {"post_url": url}, format="json")
        assert response.status_code == 400
        assert "post_url" in response.json()["error"]["details"], url
    assert not ProductChangeRequest.objects.exists()


def test_a_proposal_for_another_partners_product_is_a_404_whatever_the_body(partner, other_partner):
    theirs = other_partner.products.get()
    client = partner_client(partner)

    for body in ({"max_amount": "60000.00"}, {"max_amount": "-1"}):
        response = client.post(propose_url(theirs), body, format="json")
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "not_found"
    assert not ProductChangeRequest.objects.exists()


def test_the_same_idempotency_key_replays_the_first_response(partner, product):
    client = partner_client(partner)
    first = client.post(
        propose_url(product), {"dedupe_days": 10}, format="json", headers={"Idempotency-Key": "a"}
    )
    again = client.post(
        propose_url(product), {"dedupe_days": 10}, format="json", headers={"Idempotency-Key": "a"}
    )

    assert first.status_code == again.status_code == 201
    assert first.json() == again.json()
    assert ProductChangeRequest.objects.count() == 1


def test_approval_applies_the_change_and_bumps_updated_at(partner, product, operator):
    before = product.updated_at
    change_request = products.propose_change(
        product=product,
        changes={"max_amount": Decimal("80000.00"), "risk_tiers": ["R2", "R3"]},
    )

    approved = products.approve_change(
        change_request_id=change_request.id, decided_by=operator, note="ok"
    )

    product.refresh_from_db()
    assert product.max_amount == Decimal("80000.00")
    assert product.risk_tiers == ["R2", "R3"]
    assert product.updated_at > before
    assert approved.status == ChangeRequestStatus.APPROVED
    assert approved.decided_by == operator and approved.decided_at is not None
    listed = partner_client(partner).get(CHANGE_REQUESTS).json()["results"]
    assert [(row["id"], row["status"], row["decision_note"]) for row in listed] == [
        (str(change_request.id), "approved", "ok")
    ]


def test_approval_rechecks_against_the_product_as_it_is_now(partner, product, operator):
    raise_min = products.propose_change(product=product, changes={"min_amount": Decimal(30000)})
    lower_max = products.propose_change(product=product, changes={"max_amount": Decimal(20000)})
    products.approve_change(change_request_id=raise_min.id, decided_by=operator)

    with pytest.raises(products.ChangeRequestError) as caught:
        products.approve_change(change_request_id=lower_max.id, decided_by=operator)

    assert "max_amount" in caught.value.errors
    product.refresh_from_db()
    assert product.max_amount == Decimal("50000.00")
    lower_max.refresh_from_db()
    assert lower_max.status == ChangeRequestStatus.PENDING


def test_rejection_is_shown_to_the_partner_and_a_later_approval_changes_nothing(
    partner, product, operator
):
    change_request = products.propose_change(product=product, changes={"dedupe_days": 1})
    products.reject_change(
        change_request_id=change_request.id, decided_by=operator, note="too short"
    )
    products.approve_change(change_request_id=change_request.id, decided_by=operator)

    product.refresh_from_db()
    assert product.dedupe_days == 30
    body = partner_client(partner).get(f"{CHANGE_REQUESTS}/{change_request.id}").json()
    assert (body["status"], body["decision_note"]) == ("rejected", "too short")


def test_the_change_request_list_is_the_partners_own_and_filters_by_status(
    partner, product, other_partner, operator
):
    mine_pending = products.propose_change(product=product, changes={"dedupe_days": 5})
    mine_rejected = products.propose_change(product=product, changes={"dedupe_days": 6})
    products.reject_change(change_request_id=mine_rejected.id, decided_by=operator)
    products.propose_change(product=other_partner.products.get(), changes={"dedupe_days": 7})
    client = partner_client(partner)

    everything = {row["id"] for row in client.get(CHANGE_REQUESTS).json()["results"]}
    pending = client.get(CHANGE_REQUESTS, {"status": "pending"}).json()["results"]

    assert everything == {str(mine_pending.id), str(mine_rejected.id)}
    assert [row["id"] for row in pending] == [str(mine_pending.id)]


def test_the_admin_approve_action_applies_the_change(partner, product, admin_login):
    change_request = products.propose_change(product=product, changes={"max_term_months": 36})
    client = admin_login("root", superuser=True)

    response = client.post(
        "/admin/partners/productchangerequest/",
        {"action": "approve", "_selected_action": [str(change_request.id)]},
    )

    assert response.status_code == 302
    product.refresh_from_db()
    assert product.max_term_months == 36
    change_request.refresh_from_db()
    assert change_request.status == ChangeRequestStatus.APPROVED
    assert change_request.decided_by == client.user


def test_the_admin_shows_current_and_proposed_values(partner, product, admin_login):
    change_request = products.propose_change(product=product, changes={"max_term_months": 36})
    client = admin_login("root", superuser=True)

    html = client.get(f"/admin/partners/productchangerequest/{change_request.id}/change/")

    assert html.status_code == 200
    assert "<th>max_term_months</th><td>24</td><td>→ 36</td>" in html.content.decode()


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_approvals_of_conflicting_changes_apply_only_one(partner, product, operator):
    """Each change fits the product alone, not together: row locks make the second approval
    see the first one's result and refuse, instead of breaking the amount-range rule."""
    raise_min = products.propose_change(product=product, changes={"min_amount": Decimal(30000)})
    lower_max = products.propose_change(product=product, changes={"max_amount": Decimal(20000)})
    outcomes: dict[str, str] = {}

    def approve(change_request: ProductChangeRequest) -> None:
        try:
            products.approve_change(change_request_id=change_request.id, decided_by=operator)
            outcomes[str(change_request.id)] = "approved"
        except products.ChangeRequestError:
            outcomes[str(change_request.id)] = "refused"

    run_concurrently(partial(approve, raise_min), partial(approve, lower_max))

    assert sorted(outcomes.values()) == ["approved", "refused"]
    product.refresh_from_db()
    assert product.min_amount <= product.max_amount
