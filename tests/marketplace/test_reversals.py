"""Reversals on the events API: a partner takes back one of its earlier events; the lead's
status is recomputed from the events still standing; bad reversals are 4xx with a reason."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from billing.models import Charge
from marketplace.models import EventType, Lead, LeadEvent, LeadStatus
from partners.models import Partner
from tests.conftest import partner_client
from tests.factories import PartnerFactory, ProductFactory, referral_payload
from tests.marketplace.conftest import (
    create_referral,
    error_body,
    funded_lead,
    report_event,
    set_lead_status,
)

pytestmark = pytest.mark.django_db


def test_reversing_a_funding_moves_the_lead_back_to_approved(
    client: APIClient, partner: Partner, delivered: Callable[[Partner], Lead]
) -> None:
    lead = funded_lead(client, delivered(partner))

    response = report_event(client, lead, "reversal", "e-rev", reverses="e-fund")

    assert response.status_code == 201, response.content
    assert response.json()["type"] == "reversal"
    assert response.json()["reverses"] == "e-fund"
    lead.refresh_from_db()
    assert lead.status == LeadStatus.APPROVED
    assert lead.funded_principal is None
    assert lead.approved_amount == Decimal("8000.00")
    stored = LeadEvent.objects.get(external_id="e-rev")
    assert stored.reverses == LeadEvent.objects.get(external_id="e-fund")


def test_a_reversed_type_may_be_reported_again_with_a_new_event_id(
    client: APIClient, partner: Partner, delivered: Callable[[Partner], Lead]
) -> None:
    lead = funded_lead(client, delivered(partner))
    report_event(client, lead, "reversal", "e-rev", reverses="e-fund")

    again = report_event(client, lead, "funded", "e-fund-2", principal="7000.00")

    assert again.status_code == 201, again.content
    lead.refresh_from_db()
    assert (lead.status, lead.funded_principal) == (LeadStatus.FUNDED, Decimal("7000.00"))


def test_reversing_every_event_leaves_the_lead_delivered(
    client: APIClient, partner: Partner, delivered: Callable[[Partner], Lead]
) -> None:
    lead = delivered(partner)
    report_event(client, lead, "accepted", "e-acc")

    assert report_event(client, lead, "reversal", "e-rev", reverses="e-acc").status_code == 201

    lead.refresh_from_db()
    assert lead.status == LeadStatus.DELIVERED


def test_reversing_a_return_restores_the_status_below_it(
    client: APIClient, partner: Partner, delivered: Callable[[Partner], Lead]
) -> None:
    lead = delivered(partner)
    report_event(client, lead, "accepted", "e-acc")
    report_event(client, lead, "returned", "e-ret", reason="duplicate")

    assert report_event(client, lead, "reversal", "e-rev", reverses="e-ret").status_code == 201

    lead.refresh_from_db()
    assert lead.status == LeadStatus.ACCEPTED


def test_the_same_reversal_again_is_200_and_stores_nothing_new(
    client: APIClient, partner: Partner, delivered: Callable[[Partner], Lead]
) -> None:
    lead = funded_lead(client, delivered(partner))
    at = timezone.now().isoformat()
    first = report_event(client, lead, "reversal", "e-rev", reverses="e-fund", occurred_at=at)
    entries_after_first = Charge.objects.filter(lead=lead).count()
    again = report_event(client, lead, "reversal", "e-rev", reverses="e-fund", occurred_at=at)

    # The replay books nothing either.
    assert Charge.objects.filter(lead=lead).count() == entries_after_first
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json() == first.json()
    assert LeadEvent.objects.filter(type=EventType.REVERSAL).count() == 1


def test_same_reversal_id_naming_another_event_is_409(
    client: APIClient, partner: Partner, delivered: Callable[[Partner], Lead]
) -> None:
    lead = funded_lead(client, delivered(partner))
    at = timezone.now().isoformat()
    report_event(client, lead, "reversal", "e-rev", reverses="e-fund", occurred_at=at)

    response = report_event(client, lead, "reversal", "e-rev", reverses="e-app", occurred_at=at)

    assert response.status_code == 409
    assert error_body(response)["code"] == "event_id_conflict"


def test_reversing_an_event_twice_is_409_already_reversed(
    client: APIClient, partner: Partner, delivered: Callable[[Partner], Lead]
) -> None:
    lead = funded_lead(client, delivered(partner))
    report_event(client, lead, "reversal", "e-rev", reverses="e-fund")

    response = report_event(client, lead, "reversal", "e-rev-2", reverses="e-fund")

    assert response.status_code == 409
    assert error_body(response)["code"] == "already_reversed"
    lead.refresh_from_db()
    assert lead.status == LeadStatus.APPROVED


def test_reversing_a_reversal_is_422(
    client: APIClient, partner: Partner, delivered: Callable[[Partner], Lead]
) -> None:
    lead = funded_lead(client, delivered(partner))
    report_event(client, lead, "reversal", "e-rev", reverses="e-fund")

    response = report_event(client, lead, "reversal", "e-rev-2", reverses="e-rev")

    assert response.status_code == 422
    assert error_body(response)["code"] == "cannot_reverse_a_reversal"
    lead.refresh_from_db()
    assert lead.status == LeadStatus.APPROVED


def test_reversing_an_unknown_event_is_422(
    client: APIClient, partner: Partner, delivered: Callable[[Partner], Lead]
) -> None:
    lead = funded_lead(client, delivered(partner))

    response = report_event(client, lead, "reversal", "e-rev", reverses="no-such-event")

    assert response.status_code == 422
    assert error_body(response)["code"] == "reversed_event_not_found"
    assert "reverses" in error_body(response)["details"]


def test_reversing_an_event_of_another_lead_is_422(
    client: APIClient, partner: Partner, delivered: Callable[[Partner], Lead]
) -> None:
    first = funded_lead(client, delivered(partner))
    second = delivered(partner)

    response = report_event(client, second, "reversal", "e-rev", reverses="e-fund")

    assert response.status_code == 422
    assert error_body(response)["code"] == "reversed_event_not_found"
    first.refresh_from_db()
    assert first.status == LeadStatus.FUNDED


def test_reversing_another_partners_event_is_422(
    client: APIClient, partner: Partner, delivered: Callable[[Partner], Lead], source: Any
) -> None:
    other = PartnerFactory()
    ProductFactory(partner=other, apr_min=Decimal("0.1600"))
    referral = create_referral(source, referral_payload())
    theirs = set_lead_status(referral.leads.get(partner=other), LeadStatus.DELIVERED)
    ours = set_lead_status(referral.leads.get(partner=partner), LeadStatus.DELIVERED)
    assert report_event(partner_client(other), theirs, "accepted", "shared-id").status_code == 201

    response = report_event(client, ours, "reversal", "e-rev", reverses="shared-id")

    assert response.status_code == 422
    assert error_body(response)["code"] == "reversed_event_not_found"


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({}, "reverses"),
        ({"reverses": ""}, "reverses"),
        ({"reverses": "e-fund", "principal": "100.00"}, "reverses"),
        ({"reverses": "e-rev"}, "reverses"),  # itself
    ],
)
def test_malformed_reversal_is_422_naming_reverses(
    client: APIClient,
    partner: Partner,
    delivered: Callable[[Partner], Lead],
    fields: dict[str, str],
    field: str,
) -> None:
    lead = funded_lead(client, delivered(partner))

    response = report_event(client, lead, "reversal", "e-rev", **fields)

    assert response.status_code == 422, response.content
    assert field in error_body(response)["details"]
    assert not LeadEvent.objects.filter(type=EventType.REVERSAL).exists()


def test_reverses_on_an_ordinary_event_is_422(
    client: APIClient, partner: Partner, delivered: Callable[[Partner], Lead]
) -> None:
    lead = delivered(partner)

    response = report_event(client, lead, "accepted", "e-acc", reverses="whatever")

    assert response.status_code == 422
    assert "reverses" in error_body(response)["details"]


def test_reversal_dated_before_the_event_it_reverses_is_422(
    client: APIClient, partner: Partner, delivered: Callable[[Partner], Lead]
) -> None:
    lead = funded_lead(client, delivered(partner))
    early = (timezone.now() - timedelta(hours=1)).isoformat()

    response = report_event(client, lead, "reversal", "e-rev", reverses="e-fund", occurred_at=early)

    assert response.status_code == 422
    assert error_body(response)["code"] in {"reversal_before_event", "occurred_before_delivery"}


def test_lead_detail_shows_which_event_reversed_which(
    client: APIClient, partner: Partner, delivered: Callable[[Partner], Lead]
) -> None:
    lead = funded_lead(client, delivered(partner))
    report_event(client, lead, "reversal", "e-rev", reverses="e-fund")

    events = client.get(f"/api/v1/partner/leads/{lead.id}").json()["events"]

    by_id = {e["event_id"]: e for e in events}
    assert by_id["e-fund"]["reversed_by"] == "e-rev"
    assert by_id["e-rev"]["reverses"] == "e-fund"
    assert by_id["e-acc"]["reverses"] is None and by_id["e-acc"]["reversed_by"] is None


def test_reversal_is_in_the_openapi_schema() -> None:
    schema = APIClient().get("/api/schema/", HTTP_ACCEPT="application/json").content.decode()

    assert "reverses" in schema
    assert "already_reversed" in schema
    assert str(uuid.UUID(int=0)) not in schema  # sanity: the schema rendered, not an error
