"""Partners read their deletion requests and acknowledge them through the partner API."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from consent import grants, sequencer
from consent.ledger import verify_ledger
from consent.models import ConsentWithdrawal, DeletionRequest, LedgerEntry
from partners.models import Partner
from tests.conftest import partner_client
from tests.consent.conftest import MakeGrant
from tests.consent.support import disclose_to
from tests.factories import PartnerFactory

BASE = "/api/v1/partner/consent-withdrawals"


@pytest.fixture
def api(partner: Partner) -> APIClient:
    return partner_client(partner)


@pytest.fixture
def withdrawn(make_grant: MakeGrant, partner: Partner) -> tuple[ConsentWithdrawal, list[str]]:
    grant = make_grant(partners=[partner])
    leads = disclose_to(grant, [partner], leads_each=2)[partner.id]
    return grants.withdraw(grant_id=grant.id, channel="api"), leads


def _error(response: Any, status: int, code: str) -> None:
    assert response.status_code == status, response.content
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "details"}
    assert body["error"]["code"] == code


def _ack(api: APIClient, withdrawal_id: object, body: dict[str, Any], key: str = "") -> Any:
    headers = {"Idempotency-Key": key} if key else {}
    return api.post(f"{BASE}/{withdrawal_id}/ack", body, format="json", headers=headers)


def test_partner_lists_and_reads_its_deletion_request(
    api: APIClient, withdrawn: tuple[ConsentWithdrawal, list[str]]
) -> None:
    withdrawal, leads = withdrawn

    listed = api.get(BASE)
    detail = api.get(f"{BASE}/{withdrawal.id}")

    assert listed.status_code == 200
    (item,) = listed.json()["results"]
    assert detail.status_code == 200
    assert detail.json() == item
    assert item["withdrawal_id"] == withdrawal.id
    assert item["receipt_id"] == str(withdrawal.grant_id)
    assert item["lead_ids"] == leads
    assert item["acknowledged_at"] is None
    assert item["status"] == "outstanding"


def test_simulator_shaped_ack_acknowledges_once_and_is_logged(
    api: APIClient, withdrawn: tuple[ConsentWithdrawal, list[str]]
) -> None:
    withdrawal, leads = withdrawn
    body = {
        "withdrawal_id": str(withdrawal.id),
        "lead_ids": leads,
        "acknowledged_at": "2026-11-22T09:30:00+00:00",
    }

    response = _ack(api, withdrawal.id, body, key="lender-ack-1")

    assert response.status_code == 200, response.content
    assert response.json()["status"] == "acknowledged"
    request = DeletionRequest.objects.get()
    assert request.acknowledged_at is not None
    assert request.partner_acknowledged_at.isoformat() == "2026-11-22T09:30:00+00:00"
    sequencer.sequence_pending()
    (entry,) = LedgerEntry.objects.filter(kind="deletion.acknowledged")
    data = json.loads(entry.canonical)["data"]
    assert data["deletion_request_id"] == str(request.id)
    assert data["withdrawal_id"] == withdrawal.id
    assert verify_ledger().ok


def test_acking_twice_keeps_the_first_time_and_logs_once(
    api: APIClient, withdrawn: tuple[ConsentWithdrawal, list[str]]
) -> None:
    withdrawal, _leads = withdrawn
    first = _ack(api, withdrawal.id, {})
    replayed_key = _ack(api, withdrawal.id, {"acknowledged_at": "2026-11-23T00:00:00Z"}, "k1")
    again = _ack(api, withdrawal.id, {"acknowledged_at": "2026-11-23T00:00:00Z"})

    assert (first.status_code, replayed_key.status_code, again.status_code) == (200, 200, 200)
    assert again.json()["acknowledged_at"] == first.json()["acknowledged_at"]
    assert again.json()["partner_acknowledged_at"] is None
    assert LedgerEntry.objects.filter(kind="deletion.acknowledged").count() == 1


def test_same_idempotency_key_replays_the_first_response(
    api: APIClient, withdrawn: tuple[ConsentWithdrawal, list[str]]
) -> None:
    withdrawal, _leads = withdrawn
    first = _ack(api, withdrawal.id, {}, key="same")

    second = _ack(api, withdrawal.id, {}, key="same")

    assert second.status_code == 200
    assert second.headers.get("Idempotent-Replayed") == "true"
    assert second.json() == first.json()


def test_another_partners_withdrawal_is_not_found_and_not_acknowledged(
    withdrawn: tuple[ConsentWithdrawal, list[str]],
) -> None:
    withdrawal, _leads = withdrawn
    other = partner_client(PartnerFactory())

    _error(other.get(f"{BASE}/{withdrawal.id}"), 404, "not_found")
    _error(_ack(other, withdrawal.id, {}), 404, "not_found")

    assert other.get(BASE).json()["results"] == []
    assert DeletionRequest.objects.get().acknowledged_at is None
    assert not LedgerEntry.objects.filter(kind="deletion.acknowledged").exists()


@pytest.mark.parametrize("withdrawal_id", ["999999", "w1", "-1", "1" * 30])
def test_unknown_or_malformed_withdrawal_id_is_a_json_404(
    api: APIClient, withdrawal_id: str
) -> None:
    _error(api.get(f"{BASE}/{withdrawal_id}"), 404, "not_found")
    _error(_ack(api, withdrawal_id, {}), 404, "not_found")


def test_ack_naming_other_leads_or_another_withdrawal_is_refused(
    api: APIClient, withdrawn: tuple[ConsentWithdrawal, list[str]]
) -> None:
    withdrawal, leads = withdrawn

    _error(_ack(api, withdrawal.id, {"lead_ids": leads[:1]}), 400, "validation_error")
    _error(_ack(api, withdrawal.id, {"withdrawal_id": "12345678"}), 400, "validation_error")

    assert DeletionRequest.objects.get().acknowledged_at is None


def test_source_keys_cannot_use_the_partner_endpoints(
    source_client: APIClient, withdrawn: tuple[ConsentWithdrawal, list[str]]
) -> None:
    withdrawal, _leads = withdrawn

    _error(source_client.get(BASE), 403, "permission_denied")
    _error(_ack(source_client, withdrawal.id, {}), 403, "permission_denied")


def test_outstanding_filter_lists_only_unacknowledged_requests(
    api: APIClient, partner: Partner, make_grant: MakeGrant
) -> None:
    made = []
    for _ in range(2):
        grant = make_grant(partners=[partner])
        disclose_to(grant, [partner])
        made.append(grants.withdraw(grant_id=grant.id, channel="api"))
    _ack(api, made[0].id, {})

    outstanding = api.get(BASE, {"outstanding": "true"}).json()["results"]
    done = api.get(BASE, {"outstanding": "false"}).json()["results"]
    everything = api.get(BASE).json()["results"]

    assert [r["withdrawal_id"] for r in outstanding] == [made[1].id]
    assert [r["withdrawal_id"] for r in done] == [made[0].id]
    assert len(everything) == 2


def test_overdue_requests_are_marked_in_the_api_and_filtered_in_the_admin(
    api: APIClient, partner: Partner, make_grant: MakeGrant
) -> None:
    made = []
    for _ in range(3):
        grant = make_grant(partners=[partner])
        disclose_to(grant, [partner])
        made.append(grants.withdraw(grant_id=grant.id, channel="api"))
    past = timezone.now() - timedelta(days=1)
    DeletionRequest.objects.filter(withdrawal__in=made[:2]).update(due_at=past)
    _ack(api, made[0].id, {})  # acknowledged late: no longer overdue

    statuses = {r["withdrawal_id"]: r["status"] for r in api.get(BASE).json()["results"]}
    assert statuses == {
        made[0].id: "acknowledged",
        made[1].id: "overdue",
        made[2].id: "outstanding",
    }

    staff = Client()
    staff.force_login(User.objects.create_superuser("ops", "ops@example.invalid", "pw-123456!"))
    url = reverse("admin:consent_deletionrequest_changelist")
    overdue = staff.get(url, {"ack": "overdue"})
    outstanding = staff.get(url, {"ack": "outstanding"})

    assert overdue.status_code == 200
    assert list(overdue.context["cl"].queryset) == [DeletionRequest.objects.get(withdrawal=made[1])]
    assert {r.withdrawal_id for r in outstanding.context["cl"].queryset} == {
        made[1].id,
        made[2].id,
    }


def test_schema_documents_the_partner_withdrawal_endpoints(client: Any, db: None) -> None:
    response = client.get("/api/schema/", {"format": "json"})

    assert response.status_code == 200
    paths = json.loads(response.content)["paths"]
    listed = paths[BASE]["get"]
    ack = paths[f"{BASE}/{{withdrawal_id}}/ack"]["post"]
    assert paths[f"{BASE}/{{withdrawal_id}}"]["get"]["tags"] == ["partner"]
    assert listed["tags"] == ack["tags"] == ["partner"]
    assert "outstanding" in {p["name"] for p in listed["parameters"]}
    assert ack["requestBody"]["content"]["application/json"]["examples"]
