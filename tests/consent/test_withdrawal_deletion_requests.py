"""Withdrawal reaches every recipient: a deletion request, a ledger entry and a signed
webhook per partner that received the data, in the withdrawal's own transaction."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse

from consent import gate, grants, sequencer
from consent.ledger import verify_ledger
from consent.models import ConsentWithdrawal, DeletionRequest, LedgerEntry
from partners.models import Partner, WebhookMessage
from partners.webhook_signing import create_endpoint
from tests.consent.conftest import MakeGrant
from tests.consent.support import APPLICANT_SECRETS, disclose_to
from tests.factories import PartnerFactory


@pytest.fixture
def partners(db: None) -> list[Partner]:
    made = [PartnerFactory(), PartnerFactory(), PartnerFactory()]
    for partner in made:
        create_endpoint(partner=partner, url=f"https://{partner.slug}.example.invalid/hooks")
    return made


def _ledger(kind: str) -> list[dict[str, Any]]:
    sequencer.sequence_pending()
    return [json.loads(e.canonical)["data"] for e in LedgerEntry.objects.filter(kind=kind)]


def test_withdrawal_asks_every_partner_that_received_the_data_and_no_other(
    make_grant: MakeGrant, partners: list[Partner], settings: Any
) -> None:
    settings.DELETION_ACK_DAYS = 5
    received, untouched = partners[:2], partners[2]
    grant = make_grant(partners=partners)
    leads = disclose_to(grant, received, leads_each=2)

    withdrawal = grants.withdraw(grant_id=grant.id, channel="api")

    requests = {r.partner_id: r for r in DeletionRequest.objects.all()}
    assert set(requests) == {p.id for p in received}
    for partner in received:
        request = requests[partner.id]
        assert request.withdrawal_id == withdrawal.id
        assert request.lead_ids == leads[partner.id]
        assert request.requested_at == withdrawal.withdrawn_at
        assert request.due_at == withdrawal.withdrawn_at + timedelta(days=5)
        assert request.acknowledged_at is None
    assert not DeletionRequest.objects.filter(partner=untouched).exists()


def test_withdrawal_enqueues_one_consent_withdrawn_webhook_per_recipient(
    make_grant: MakeGrant, partners: list[Partner]
) -> None:
    grant = make_grant(partners=partners)
    leads = disclose_to(grant, partners[:2])

    withdrawal = grants.withdraw(grant_id=grant.id, channel="api")

    messages = list(WebhookMessage.objects.order_by("partner_id"))
    assert {m.partner_id for m in messages} == {p.id for p in partners[:2]}
    for message in messages:
        request = DeletionRequest.objects.get(partner_id=message.partner_id)
        assert message.event_type == "consent.withdrawn"
        assert message.dedupe_key == f"consent.withdrawn:{withdrawal.id}"
        assert message.payload["type"] == "consent.withdrawn"
        assert message.payload["data"] == {
            "withdrawal_id": withdrawal.id,
            "receipt_id": str(grant.id),
            "lead_ids": leads[message.partner_id],
            "requested_at": request.requested_at.isoformat(),
            "due_at": request.due_at.isoformat(),
        }


def test_withdrawal_appends_one_deletion_requested_entry_per_partner_without_personal_data(
    make_grant: MakeGrant, partners: list[Partner]
) -> None:
    grant = make_grant(partners=partners)
    disclose_to(grant, partners[:2])

    withdrawal = grants.withdraw(grant_id=grant.id, channel="api")

    entries = _ledger("deletion.requested")
    assert sorted(e["partner_id"] for e in entries) == sorted(str(p.id) for p in partners[:2])
    assert all(e["withdrawal_id"] == withdrawal.id for e in entries)
    assert all(e["receipt_id"] == str(grant.id) for e in entries)
    assert _ledger("consent.withdrawn")[0]["withdrawal_id"] == withdrawal.id
    # The withdrawal comes first, then its deletion requests (one transaction's entries
    # keep their order).
    kinds = list(LedgerEntry.objects.order_by("seq").values_list("kind", flat=True))
    assert kinds[-3:] == ["consent.withdrawn", "deletion.requested", "deletion.requested"]
    canonical = "".join(LedgerEntry.objects.values_list("canonical", flat=True))
    assert not any(secret in canonical for secret in APPLICANT_SECRETS)
    assert verify_ledger().ok


def test_withdrawing_twice_makes_no_second_requests_webhooks_or_entries(
    make_grant: MakeGrant, partners: list[Partner]
) -> None:
    grant = make_grant(partners=partners)
    disclose_to(grant, partners)
    first = grants.withdraw(grant_id=grant.id, channel="api")
    counts = (
        DeletionRequest.objects.count(),
        WebhookMessage.objects.count(),
        LedgerEntry.objects.count(),
    )

    second = grants.withdraw(grant_id=grant.id, channel="admin", reason="again")

    assert second.pk == first.pk
    assert counts == (
        DeletionRequest.objects.count(),
        WebhookMessage.objects.count(),
        LedgerEntry.objects.count(),
    )
    assert counts[0] == 3


def test_withdrawal_without_disclosures_requests_no_deletion(
    make_grant: MakeGrant, partners: list[Partner]
) -> None:
    grant = make_grant(partners=partners)

    grants.withdraw(grant_id=grant.id, channel="api")

    assert not DeletionRequest.objects.exists()
    assert not WebhookMessage.objects.exists()
    assert not LedgerEntry.objects.filter(kind="deletion.requested").exists()


def test_withdrawal_stops_disclosure_at_once(
    make_grant: MakeGrant, partners: list[Partner]
) -> None:
    grant = make_grant(partners=partners)
    disclose_to(grant, partners[:1])

    grants.withdraw(grant_id=grant.id, channel="api")

    with pytest.raises(gate.DisclosureRefused) as refused:
        disclose_to(grant, partners[:1])
    assert refused.value.code == "consent_withdrawn"


def test_withdrawal_through_the_api_creates_the_deletion_requests(
    source_client: Any, partners: list[Partner], make_grant: MakeGrant
) -> None:
    grant = make_grant(partners=partners)  # collected by the client's own source
    assert grant.source_id == source_client.source.id
    disclose_to(grant, partners[:1])

    response = source_client.post(f"/api/v1/consents/{grant.id}/withdraw", {}, format="json")

    assert response.status_code == 200
    assert response.json()["status"] == "withdrawn"
    (request,) = DeletionRequest.objects.all()
    assert request.partner_id == partners[0].id


# --- Admin action --------------------------------------------------------------------------


@pytest.fixture
def admin_client(db: None) -> Client:
    client = Client()
    client.force_login(User.objects.create_superuser("ops", "ops@example.invalid", "pw-123456!"))
    return client


def test_admin_withdraw_action_asks_for_a_reason_before_withdrawing(
    admin_client: Client, make_grant: MakeGrant, partners: list[Partner]
) -> None:
    grant = make_grant(partners=partners)
    disclose_to(grant, partners[:1])
    url = reverse("admin:consent_consentgrant_changelist")
    selected = {"action": "withdraw_consent", "_selected_action": [str(grant.id)]}

    page = admin_client.post(url, selected)

    assert page.status_code == 200
    assert b'name="reason"' in page.content
    assert not ConsentWithdrawal.objects.exists()

    done = admin_client.post(url, {**selected, "apply": "1", "reason": "applicant phoned us"})

    assert done.status_code == 302
    withdrawal = ConsentWithdrawal.objects.get(grant=grant)
    assert (withdrawal.channel, withdrawal.reason) == ("admin", "applicant phoned us")
    assert DeletionRequest.objects.get().partner_id == partners[0].id


def test_admin_withdraw_action_is_refused_without_a_reason(
    admin_client: Client, make_grant: MakeGrant
) -> None:
    grant = make_grant()
    url = reverse("admin:consent_consentgrant_changelist")

    page = admin_client.post(
        url,
        {"action": "withdraw_consent", "_selected_action": [str(grant.id)], "apply": "1"},
    )

    assert page.status_code == 200
    assert b"This field is required" in page.content
    assert not ConsentWithdrawal.objects.exists()
