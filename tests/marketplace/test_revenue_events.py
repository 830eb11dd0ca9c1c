"""Revenue events on the events API: a partner reports what it earned on a funded loan per
period; only on a funded lead, one per period, reversible, never a status change."""

from __future__ import annotations

from typing import Any

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from marketplace.events import derive_status
from marketplace.models import EventType, Lead, LeadEvent, LeadStatus
from tests.marketplace.conftest import error_body, funded_lead, report_event

pytestmark = pytest.mark.django_db

THIS_MONTH = f"{timezone.now():%Y-%m}"


@pytest.fixture
def funded(client: APIClient, lead: Lead) -> Lead:
    return funded_lead(client, lead)


def revenue(client: APIClient, lead: Lead, event_id: str, amount: str, **fields: Any) -> Any:
    return report_event(client, lead, "revenue", event_id, amount=amount, **fields)


def test_revenue_is_stored_with_its_period_and_keeps_the_status(
    client: APIClient, funded: Lead
) -> None:
    at = timezone.now().isoformat()
    response = revenue(client, funded, "r-1", "120.50", period=THIS_MONTH, occurred_at=at)

    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["type"], body["amount"], body["period"]) == ("revenue", "120.50", THIS_MONTH)
    funded.refresh_from_db()
    assert funded.status == LeadStatus.FUNDED
    assert funded.funded_principal is not None
    # Sent again: the stored event, 200.
    again = revenue(client, funded, "r-1", "120.50", period=THIS_MONTH, occurred_at=at)
    assert again.status_code == 200
    assert revenue(client, funded, "r-1", "99.00", occurred_at=at).status_code == 409


def test_the_period_defaults_to_the_month_of_occurred_at(client: APIClient, funded: Lead) -> None:
    response = revenue(client, funded, "r-1", "10.00")

    assert response.status_code == 201, response.content
    assert LeadEvent.objects.get(external_id="r-1").revenue_period == THIS_MONTH


def test_revenue_on_an_unfunded_lead_is_422(client: APIClient, lead: Lead) -> None:
    assert report_event(client, lead, "accepted", "e-acc").status_code == 201

    response = revenue(client, lead, "r-1", "10.00")

    assert response.status_code == 422
    assert error_body(response)["code"] == "lead_not_funded"


def test_a_second_revenue_for_one_period_is_409(client: APIClient, funded: Lead) -> None:
    assert revenue(client, funded, "r-1", "10.00", period=THIS_MONTH).status_code == 201

    response = revenue(client, funded, "r-2", "11.00", period=THIS_MONTH)

    assert response.status_code == 409
    assert error_body(response)["code"] == "duplicate_revenue_period"


@pytest.mark.parametrize(
    ("fields", "status"),
    [
        ({"amount": "7500.01"}, 422),  # above the funded principal
        ({"amount": "0"}, 400),
        ({"amount": None}, 422),
        ({"amount": "1.00", "period": "2026-13"}, 400),
        ({"amount": "1.00", "period": "2999-01"}, 422),  # after occurred_at
        ({"amount": "1.00", "period": "2000-01"}, 422),  # before the funding
        ({"amount": "1.00", "principal": "5.00"}, 422),
    ],
)
def test_bad_revenue_is_refused(
    client: APIClient, funded: Lead, fields: dict[str, Any], status: int
) -> None:
    response = report_event(client, funded, "revenue", "r-bad", **fields)

    assert response.status_code == status, response.content
    assert not LeadEvent.objects.filter(type=EventType.REVENUE).exists()


def test_only_revenue_names_a_period(client: APIClient, lead: Lead) -> None:
    response = report_event(client, lead, "accepted", "e-acc", period=THIS_MONTH)

    assert response.status_code == 422
    assert error_body(response)["details"] == {"period": ["only a revenue event may name a period"]}


def test_reversed_revenue_may_be_reported_again(client: APIClient, funded: Lead) -> None:
    assert revenue(client, funded, "r-1", "10.00", period=THIS_MONTH).status_code == 201
    assert report_event(client, funded, "reversal", "r-1-x", reverses="r-1").status_code == 201

    response = revenue(client, funded, "r-1-fixed", "12.00", period=THIS_MONTH)

    assert response.status_code == 201, response.content
    funded.refresh_from_db()
    assert funded.status == LeadStatus.FUNDED


def test_a_funding_with_revenue_cannot_be_reversed(client: APIClient, funded: Lead) -> None:
    assert revenue(client, funded, "r-1", "10.00").status_code == 201

    response = report_event(client, funded, "reversal", "fund-x", reverses="e-fund")

    assert response.status_code == 422
    assert error_body(response)["code"] == "revenue_reported"
    # Reverse the revenue first, then the funding.
    assert report_event(client, funded, "reversal", "r-1-x", reverses="r-1").status_code == 201
    assert report_event(client, funded, "reversal", "fund-x", reverses="e-fund").status_code == 201
    assert revenue(client, funded, "r-2", "10.00").json()["error"]["code"] == "lead_not_funded"


def test_revenue_never_ranks_in_the_status() -> None:
    assert derive_status({EventType.REVENUE}) is None
    assert derive_status({EventType.FUNDED, EventType.REVENUE}) == LeadStatus.FUNDED


def test_the_schema_documents_revenue(client: APIClient) -> None:
    schema = APIClient().get("/api/schema/")
    if schema.status_code != 200:
        pytest.skip("no schema endpoint at /api/schema/")
    assert b"duplicate_revenue_period" in schema.content
