"""The partner API: a partner's own leads (no personal data in the list), the applicant on
detail as a logged disclosure, outcome events (idempotent, any order), and the schema/docs."""

from __future__ import annotations

import itertools
import re
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.conf import settings
from django.utils import timezone
from rest_framework.test import APIClient

from consent import grants
from consent.models import PII_FIELDS, Disclosure
from marketplace.models import Lead, LeadEvent, LeadStatus, Referral
from partners.models import DeliveryMode, Partner
from tests.conftest import partner_client
from tests.factories import PartnerFactory, ProductFactory, referral_payload
from tests.marketplace.conftest import create_referral, pii_strings, set_lead_status

pytestmark = pytest.mark.django_db

LEADS_URL = "/api/v1/partner/leads"
PII_KEYS = {*PII_FIELDS, "applicant"}


def detail_url(lead: Lead | uuid.UUID) -> str:
    return f"{LEADS_URL}/{lead.id if isinstance(lead, Lead) else lead}"


def events_url(lead: Lead | uuid.UUID) -> str:
    return f"{detail_url(lead)}/events"


def keys_anywhere(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield key
            yield from keys_anywhere(item)
    elif isinstance(value, list):
        for item in value:
            yield from keys_anywhere(item)


@pytest.fixture
def payload() -> dict[str, Any]:
    return referral_payload()


@pytest.fixture
def lead_for(source: Any, consent_text: object, payload: dict[str, Any]) -> Callable[..., Lead]:
    """``lead_for(partner, status=..., delivery_mode=...)``: a lead of a real referral of
    ``payload``'s applicant (the first call) or a fresh applicant (later calls)."""
    used = {"first": True}

    def make(
        partner: Partner,
        *,
        status: str | None = LeadStatus.DELIVERED,
        delivery_mode: str = DeliveryMode.DIRECT_POST,
    ) -> Lead:
        if not partner.products.exists():
            ProductFactory(partner=partner, delivery_mode=delivery_mode)
        body = payload if used["first"] else referral_payload()
        used["first"] = False
        referral = create_referral(source, body)
        lead = referral.leads.get(partner=partner)
        return set_lead_status(lead, status) if status else lead

    return make


@pytest.fixture
def partner(db: None) -> Partner:
    """No product yet, unlike marketplace's ``partner``: ``lead_for`` gives it one in the
    delivery mode each test needs."""
    return PartnerFactory()


def event(event_type: str, event_id: str | None = None, **fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "event_id": event_id or f"{event_type}-{uuid.uuid4().hex[:8]}",
        "type": event_type,
        "occurred_at": timezone.now().isoformat(),
    }
    body.update(fields)
    return body


APPROVED = {"amount": "8000.00", "apr": "0.1800"}
FUNDED = {"principal": "7500.00"}


def post_event(client: APIClient, lead: Lead, body: dict[str, Any]) -> Any:
    return client.post(events_url(lead), body, format="json")


# --- Lead list --------------------------------------------------------------------------------


def test_list_shows_only_the_partners_own_leads(
    client: APIClient, partner: Partner, lead_for: Callable[..., Lead]
) -> None:
    other = PartnerFactory()
    ProductFactory(partner=other)
    mine = lead_for(partner)
    theirs = Lead.objects.get(referral=mine.referral, partner=other)
    another_mine = lead_for(partner)

    response = client.get(LEADS_URL)

    assert response.status_code == 200
    ids = {row["id"] for row in response.json()["results"]}
    assert ids == {str(mine.id), str(another_mine.id)}
    assert str(theirs.id) not in response.content.decode()


def test_list_carries_no_personal_data(
    client: APIClient,
    partner: Partner,
    lead_for: Callable[..., Lead],
    payload: dict[str, Any],
) -> None:
    lead_for(partner)

    response = client.get(LEADS_URL)

    (row,) = response.json()["results"]
    assert not PII_KEYS & set(keys_anywhere(response.json()))
    content = response.content.decode()
    for secret in [*pii_strings(payload), payload["applicant"]["birth_date"]]:
        assert secret not in content
    # What the partner gets instead: the loan and anonymised bands.
    assert row["loan"]["amount"] == "8000.00"
    assert row["age_band"] == "35-44"  # born 1990-03-07
    assert row["income_band"] == "5000-9999"


def test_list_filters_by_status(
    client: APIClient, partner: Partner, lead_for: Callable[..., Lead]
) -> None:
    delivered = lead_for(partner, status=LeadStatus.DELIVERED)
    funded = lead_for(partner, status=LeadStatus.FUNDED)
    lead_for(partner, status=LeadStatus.MATCHED)

    def ids(query: str) -> set[str]:
        response = client.get(f"{LEADS_URL}?{query}")
        assert response.status_code == 200, response.content
        return {row["id"] for row in response.json()["results"]}

    assert ids("status=delivered") == {str(delivered.id)}
    assert ids("status=funded") == {str(funded.id)}
    assert len(ids("")) == 3


def test_list_with_an_unknown_status_is_a_validation_error(client: APIClient) -> None:
    response = client.get(f"{LEADS_URL}?status=paid")

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert "status" in error["details"]


def test_list_is_newest_first_and_paginated(
    client: APIClient, partner: Partner, lead_for: Callable[..., Lead]
) -> None:
    leads = [lead_for(partner) for _ in range(3)]
    for age, lead in enumerate(reversed(leads)):
        Lead.objects.filter(pk=lead.pk).update(created_at=timezone.now() - timedelta(hours=age))

    first = client.get(f"{LEADS_URL}?page_size=2").json()
    second = client.get(first["next"]).json()

    assert [row["id"] for row in first["results"] + second["results"]] == [
        str(lead.id) for lead in reversed(leads)
    ]
    assert second["next"] is None


# --- Lead detail ------------------------------------------------------------------------------


def test_detail_of_a_delivered_lead_includes_the_applicant_and_logs_a_disclosure(
    client: APIClient,
    partner: Partner,
    lead_for: Callable[..., Lead],
    payload: dict[str, Any],
) -> None:
    lead = lead_for(partner)
    before = Disclosure.objects.count()

    response = client.get(detail_url(lead))

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["applicant"] == payload["applicant"]
    grant = Referral.objects.get(pk=lead.referral_id).grant
    assert body["consent"]["receipt_id"] == str(grant.id)
    assert body["consent"]["text_sha256"] == grant.text.sha256
    assert Disclosure.objects.count() == before + 1
    disclosure = Disclosure.objects.latest("disclosed_at")
    assert (disclosure.partner_id, disclosure.reference) == (partner.id, f"lead:{lead.id}")


def test_detail_of_an_undelivered_lead_has_no_applicant_and_discloses_nothing(
    client: APIClient, partner: Partner, lead_for: Callable[..., Lead]
) -> None:
    lead = lead_for(partner, status=LeadStatus.MATCHED)

    response = client.get(detail_url(lead))

    assert response.status_code == 200
    assert response.json()["applicant"] is None
    assert not Disclosure.objects.exists()


def test_pull_mode_lead_becomes_delivered_on_first_detail_read(
    client: APIClient, partner: Partner, lead_for: Callable[..., Lead]
) -> None:
    lead = lead_for(partner, status=None, delivery_mode=DeliveryMode.PULL)
    assert lead.status == LeadStatus.AVAILABLE

    first = client.get(detail_url(lead))

    assert first.status_code == 200, first.content
    assert first.json()["status"] == LeadStatus.DELIVERED
    assert first.json()["applicant"] is not None
    lead.refresh_from_db()
    assert lead.status == LeadStatus.DELIVERED
    delivered_at = lead.delivered_at
    assert delivered_at is not None

    second = client.get(detail_url(lead))

    assert second.json()["status"] == LeadStatus.DELIVERED
    lead.refresh_from_db()
    assert lead.delivered_at == delivered_at
    assert Disclosure.objects.filter(reference=f"lead:{lead.id}").count() == 2


def test_pull_mode_lead_with_withdrawn_consent_withholds_the_applicant(
    client: APIClient, partner: Partner, lead_for: Callable[..., Lead]
) -> None:
    lead = lead_for(partner, status=None, delivery_mode=DeliveryMode.PULL)
    grants.withdraw(grant_id=lead.referral.grant_id, channel="api")

    response = client.get(detail_url(lead))

    assert response.status_code == 200
    assert response.json()["applicant"] is None
    assert response.json()["applicant_unavailable"] == "consent_withdrawn"
    lead.refresh_from_db()
    assert lead.status == LeadStatus.AVAILABLE
    assert not Disclosure.objects.exists()


def test_another_partners_lead_is_404_on_detail_and_on_events(
    client: APIClient, lead_for: Callable[..., Lead]
) -> None:
    theirs = lead_for(PartnerFactory())
    missing = uuid.uuid4()

    for lead_id in (theirs.id, missing):
        detail = client.get(detail_url(lead_id))
        events = client.post(events_url(lead_id), event("accepted"), format="json")

        assert detail.status_code == 404
        assert detail.json()["error"]["code"] == "not_found"
        assert events.status_code == 404
        assert events.json()["error"]["code"] == "not_found"
    assert not Disclosure.objects.exists()
    assert not LeadEvent.objects.exists()
    theirs.refresh_from_db()
    assert theirs.status == LeadStatus.DELIVERED


def test_another_partners_lead_is_404_even_with_an_invalid_event(
    client: APIClient, lead_for: Callable[..., Lead]
) -> None:
    """Validation must not run first and reveal that the lead exists."""
    theirs = lead_for(PartnerFactory())

    response = client.post(events_url(theirs), {"type": "paid"}, format="json")

    assert response.status_code == 404


# --- Events -----------------------------------------------------------------------------------


def test_accepted_event_is_201_and_moves_the_lead(
    client: APIClient, partner: Partner, lead_for: Callable[..., Lead]
) -> None:
    lead = lead_for(partner)

    response = post_event(client, lead, event("accepted", "evt-1"))

    assert response.status_code == 201, response.content
    assert response.json()["event_id"] == "evt-1"
    assert response.json()["type"] == "accepted"
    lead.refresh_from_db()
    assert lead.status == LeadStatus.ACCEPTED


def test_same_event_again_is_200_with_the_same_body(
    client: APIClient, partner: Partner, lead_for: Callable[..., Lead]
) -> None:
    lead = lead_for(partner)
    occurred = (timezone.now() - timedelta(minutes=3)).astimezone(timezone.get_fixed_timezone(480))
    body = event("approved", "evt-1", occurred_at=occurred.isoformat(), **APPROVED)

    first = post_event(client, lead, body)
    again = post_event(client, lead, body)

    assert first.status_code == 201, first.content
    assert again.status_code == 200, again.content
    assert again.json() == first.json()
    assert LeadEvent.objects.count() == 1


def test_same_event_id_with_other_content_is_409(
    client: APIClient, partner: Partner, lead_for: Callable[..., Lead]
) -> None:
    lead = lead_for(partner)
    post_event(client, lead, event("approved", "evt-1", **APPROVED))

    response = post_event(client, lead, event("approved", "evt-1", amount="9000.00", apr="0.1800"))

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "event_id_conflict"
    assert "event_id" in response.json()["error"]["details"]
    lead.refresh_from_db()
    assert lead.approved_amount == Decimal("8000.00")


def test_same_event_id_on_another_lead_is_409(
    client: APIClient, partner: Partner, lead_for: Callable[..., Lead]
) -> None:
    first, second = lead_for(partner), lead_for(partner)
    body = event("accepted", "evt-1")
    post_event(client, first, body)

    response = post_event(client, second, body)

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "event_id_conflict"


def test_a_second_event_of_the_same_type_is_409(
    client: APIClient, partner: Partner, lead_for: Callable[..., Lead]
) -> None:
    lead = lead_for(partner)
    post_event(client, lead, event("accepted", "evt-1"))

    response = post_event(client, lead, event("accepted", "evt-2"))

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "duplicate_event_type"


def test_funded_before_approved_is_accepted(
    client: APIClient, partner: Partner, lead_for: Callable[..., Lead]
) -> None:
    lead = lead_for(partner)

    response = post_event(client, lead, event("funded", **FUNDED))

    assert response.status_code == 201, response.content
    lead.refresh_from_db()
    assert lead.status == LeadStatus.FUNDED
    assert lead.funded_principal == Decimal("7500.00")


def test_approved_below_the_funded_principal_is_422(
    client: APIClient, partner: Partner, lead_for: Callable[..., Lead]
) -> None:
    lead = lead_for(partner)
    post_event(client, lead, event("funded", **FUNDED))

    response = post_event(client, lead, event("approved", amount="7000.00", apr="0.1800"))

    assert response.status_code == 422
    assert list(response.json()["error"]["details"]) == ["amount"]
    assert LeadEvent.objects.filter(lead=lead).count() == 1


def test_funded_principal_above_the_approved_amount_is_422(
    client: APIClient, partner: Partner, lead_for: Callable[..., Lead]
) -> None:
    lead = lead_for(partner)
    post_event(client, lead, event("approved", **APPROVED))

    response = post_event(client, lead, event("funded", principal="8000.01"))

    assert response.status_code == 422
    assert list(response.json()["error"]["details"]) == ["principal"]
    lead.refresh_from_db()
    assert lead.status == LeadStatus.APPROVED


@pytest.mark.parametrize(
    ("body", "field"),
    [
        pytest.param(event("approved", amount="-5.00", apr="0.1800"), "amount", id="neg-amount"),
        pytest.param(event("approved", amount="0", apr="0.1800"), "amount", id="zero-amount"),
        pytest.param(event("approved", amount="8000.00", apr="1.5"), "apr", id="apr-over-1"),
        pytest.param(event("approved", amount="8000.00", apr="-0.1"), "apr", id="negative-apr"),
        pytest.param(event("funded", principal="-1.00"), "principal", id="neg-principal"),
        pytest.param(event("funded", principal="20000000.00"), "principal", id="huge-principal"),
        pytest.param(event("paid"), "type", id="unknown-type"),
        pytest.param(event("accepted", occurred_at="yesterday"), "occurred_at", id="bad-time"),
        pytest.param({"type": "accepted", "occurred_at": "2026-01-01T00:00:00Z"}, "event_id"),
    ],
)
def test_malformed_event_is_400_naming_the_field(
    client: APIClient,
    partner: Partner,
    lead_for: Callable[..., Lead],
    body: dict[str, Any],
    field: str,
) -> None:
    lead = lead_for(partner)

    response = post_event(client, lead, body)

    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert field in error["details"]
    assert not LeadEvent.objects.exists()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        pytest.param(event("rejected"), "reason", id="rejected-without-reason"),
        pytest.param(event("returned"), "reason", id="returned-without-reason"),
        pytest.param(event("approved", amount="8000.00"), "amount", id="approved-without-apr"),
        pytest.param(event("funded"), "principal", id="funded-without-principal"),
        pytest.param(
            event("accepted", occurred_at=(timezone.now() + timedelta(days=1)).isoformat()),
            "occurred_at",
            id="in-the-future",
        ),
    ],
)
def test_event_missing_what_its_type_needs_is_422(
    client: APIClient,
    partner: Partner,
    lead_for: Callable[..., Lead],
    body: dict[str, Any],
    field: str,
) -> None:
    lead = lead_for(partner)

    response = post_event(client, lead, body)

    assert response.status_code == 422, response.content
    assert response.json()["error"]["code"] == "invalid_event"
    assert list(response.json()["error"]["details"]) == [field]
    assert not LeadEvent.objects.exists()


def test_return_inside_the_window_is_accepted(
    client: APIClient, partner: Partner, lead_for: Callable[..., Lead]
) -> None:
    lead = lead_for(partner)

    response = post_event(client, lead, event("returned", reason="duplicate"))

    assert response.status_code == 201, response.content
    lead.refresh_from_db()
    assert lead.status == LeadStatus.RETURNED


def test_return_after_the_window_is_422_return_window_closed(
    client: APIClient, partner: Partner, lead_for: Callable[..., Lead]
) -> None:
    lead = lead_for(partner)
    delivered = timezone.now() - timedelta(days=settings.RETURN_WINDOW_DAYS, hours=1)
    Lead.objects.filter(pk=lead.pk).update(delivered_at=delivered)

    response = post_event(client, lead, event("returned", reason="duplicate"))

    assert response.status_code == 422
    assert response.json()["error"]["code"] == "return_window_closed"
    lead.refresh_from_db()
    assert lead.status == LeadStatus.DELIVERED


@pytest.mark.parametrize(
    "status",
    [
        LeadStatus.MATCHED,
        LeadStatus.AVAILABLE,
        LeadStatus.BLOCKED,
        LeadStatus.POST_REJECTED,
        LeadStatus.DELIVERY_FAILED,
    ],
)
def test_event_on_a_lead_never_delivered_is_422_lead_not_delivered(
    client: APIClient, partner: Partner, lead_for: Callable[..., Lead], status: str
) -> None:
    lead = lead_for(partner, status=status)

    response = post_event(client, lead, event("accepted"))

    assert response.status_code == 422
    assert response.json()["error"]["code"] == "lead_not_delivered"
    assert not LeadEvent.objects.exists()


@pytest.mark.parametrize(
    "order", list(itertools.permutations(["accepted", "approved", "funded"])), ids=str
)
def test_lead_status_does_not_depend_on_arrival_order(
    client: APIClient,
    partner: Partner,
    lead_for: Callable[..., Lead],
    order: tuple[str, ...],
) -> None:
    fields = {"accepted": {}, "approved": APPROVED, "funded": FUNDED}
    lead = lead_for(partner)

    for event_type in order:
        response = post_event(client, lead, event(event_type, **fields[event_type]))
        assert response.status_code == 201, (event_type, response.content)

    lead.refresh_from_db()
    assert lead.status == LeadStatus.FUNDED
    assert lead.approved_amount == Decimal("8000.00")
    assert lead.approved_apr == Decimal("0.1800")
    assert lead.funded_principal == Decimal("7500.00")


@pytest.mark.parametrize(
    "order", list(itertools.permutations(["accepted", "funded", "returned"])), ids=str
)
def test_a_returned_lead_stays_returned_whatever_arrives_after(
    client: APIClient,
    partner: Partner,
    lead_for: Callable[..., Lead],
    order: tuple[str, ...],
) -> None:
    fields = {"accepted": {}, "funded": FUNDED, "returned": {"reason": "fraud"}}
    lead = lead_for(partner)

    for event_type in order:
        assert post_event(client, lead, event(event_type, **fields[event_type])).status_code == 201

    lead.refresh_from_db()
    assert lead.status == LeadStatus.RETURNED


def test_events_show_on_the_lead_detail(
    client: APIClient, partner: Partner, lead_for: Callable[..., Lead]
) -> None:
    lead = lead_for(partner)
    post_event(client, lead, event("accepted", "evt-1"))

    body = client.get(detail_url(lead)).json()

    assert body["status"] == LeadStatus.ACCEPTED
    assert [e["event_id"] for e in body["events"]] == ["evt-1"]


def test_event_post_with_idempotency_key_replays(
    client: APIClient, partner: Partner, lead_for: Callable[..., Lead]
) -> None:
    lead = lead_for(partner)
    body = event("accepted", "evt-1")

    first = client.post(events_url(lead), body, format="json", headers={"Idempotency-Key": "k"})
    again = client.post(events_url(lead), body, format="json", headers={"Idempotency-Key": "k"})

    assert first.status_code == again.status_code == 201
    assert again["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()


# --- Schema and docs --------------------------------------------------------------------------


def test_openapi_schema_is_served_with_the_api_paths() -> None:
    response = APIClient().get("/api/schema/?format=json")

    assert response.status_code == 200
    paths = response.json()["paths"]
    for path in (
        "/api/v1/referrals",
        "/api/v1/partner/leads",
        "/api/v1/partner/leads/{lead_id}",
        "/api/v1/partner/leads/{lead_id}/events",
    ):
        assert path in paths
    list_params = {p["name"] for p in paths["/api/v1/partner/leads"]["get"]["parameters"]}
    assert {"status", "created_after", "created_before", "is_sandbox"} <= list_params


def test_swagger_ui_is_served_without_any_external_url() -> None:
    response = APIClient().get("/api/docs/")

    assert response.status_code == 200
    html = response.content.decode()
    assert "swagger-ui" in html
    external = re.findall(r"""(?:src|href)\s*=\s*["']((?:https?:)?//[^"']+)""", html)
    assert external == []
    assert "cdn" not in html.lower()
    assert "unpkg" not in html.lower()


def test_sandbox_key_sees_only_sandbox_leads(
    partner: Partner, lead_for: Callable[..., Lead]
) -> None:
    live = lead_for(partner)
    sandbox = lead_for(partner)
    Lead.objects.filter(pk=sandbox.pk).update(is_sandbox=True)
    sandbox_client = partner_client(partner, mode="sandbox")

    listed = sandbox_client.get(LEADS_URL).json()["results"]
    live_detail = sandbox_client.get(detail_url(live))
    live_event = post_event(sandbox_client, live, event("accepted"))
    sandbox_detail = sandbox_client.get(detail_url(sandbox))

    assert [row["id"] for row in listed] == [str(sandbox.id)]
    assert live_detail.status_code == 404
    assert live_event.status_code == 404
    assert sandbox_detail.status_code == 200
    assert Disclosure.objects.filter(reference=f"lead:{live.id}").count() == 0
    assert not LeadEvent.objects.filter(lead=live).exists()


def test_a_live_key_does_not_see_the_partners_sandbox_leads(
    client: APIClient, partner: Partner, lead_for: Callable[..., Lead]
) -> None:
    """Key mode isolates both ways: sandbox leads (e.g. those of a partner in sandbox
    status) are read and reported on with a sandbox key only."""
    sandbox = lead_for(partner)
    Lead.objects.filter(pk=sandbox.pk).update(is_sandbox=True)

    assert client.get(detail_url(sandbox)).status_code == 404
    assert client.get(LEADS_URL).json()["results"] == []
    assert post_event(client, sandbox, event("accepted")).status_code == 404
    assert partner_client(partner, mode="sandbox").get(detail_url(sandbox)).status_code == 200


def test_event_dated_before_the_lead_was_delivered_is_422(
    client: APIClient, partner: Partner, lead_for: Callable[..., Lead]
) -> None:
    lead = lead_for(partner)
    long_before = (lead.delivered_at - timedelta(days=30)).isoformat()

    response = post_event(client, lead, event("funded", occurred_at=long_before, **FUNDED))

    assert response.status_code == 422


def test_return_reported_after_the_window_is_422_even_if_dated_inside_it(
    client: APIClient, partner: Partner, lead_for: Callable[..., Lead]
) -> None:
    lead = lead_for(partner)
    delivered = timezone.now() - timedelta(days=settings.RETURN_WINDOW_DAYS + 30)
    Lead.objects.filter(pk=lead.pk).update(delivered_at=delivered)
    inside_window = (delivered + timedelta(days=1)).isoformat()

    response = post_event(
        client, lead, event("returned", occurred_at=inside_window, reason="duplicate")
    )

    assert response.status_code == 422
