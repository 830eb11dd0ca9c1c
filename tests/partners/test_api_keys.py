"""API keys: prefixed, stored as a keyed hash only, shown once; Bearer authentication and
the source/partner key kinds."""

from __future__ import annotations

import hashlib
import hmac
import re
from datetime import timedelta
from typing import Any

import pytest
from django.conf import settings
from django.forms.models import model_to_dict
from django.utils import timezone
from rest_framework.test import APIClient

from partners.keys import authenticate_key, issue_api_key, revoke_api_key
from partners.models import ApiKey, KeyKind, KeyMode, Partner, PartnerStatus
from tests.conftest import partner_client
from tests.factories import PartnerFactory, TrafficSourceFactory, referral_payload

pytestmark = pytest.mark.django_db

LEADS_URL = "/api/v1/partner/leads"
REFERRALS_URL = "/api/v1/referrals"


def bearer(key: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    return client


def assert_error_shape(body: dict, code: str) -> None:
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "details"}
    assert body["error"]["code"] == code
    assert body["error"]["message"]


def test_issued_key_is_prefixed_and_stored_only_as_a_keyed_hash() -> None:
    issued = issue_api_key(partner=PartnerFactory(), mode=KeyMode.SANDBOX)

    prefix, mode, lookup, secret = issued.plaintext.split("_", 3)
    assert (prefix, mode) == (settings.API_KEY_PREFIX, "sandbox")
    row = ApiKey.objects.get(pk=issued.api_key.pk)
    assert row.prefix == lookup
    expected = hmac.new(
        settings.API_KEY_PEPPER.encode(), issued.plaintext.encode(), hashlib.sha256
    ).hexdigest()
    assert row.key_hash == expected
    # Neither the key nor its secret part is anywhere in the stored row.
    stored = " ".join(str(value) for value in model_to_dict(row).values())
    assert issued.plaintext not in stored
    assert secret not in stored
    assert hashlib.sha256(issued.plaintext.encode()).hexdigest() != row.key_hash  # keyed


def test_two_keys_for_the_same_owner_differ() -> None:
    partner = PartnerFactory()

    first = issue_api_key(partner=partner)
    second = issue_api_key(partner=partner)

    assert first.plaintext != second.plaintext
    assert first.api_key.prefix != second.api_key.prefix


def test_a_key_belongs_to_exactly_one_owner() -> None:
    with pytest.raises(ValueError):
        issue_api_key()
    with pytest.raises(ValueError):
        issue_api_key(partner=PartnerFactory(), source=TrafficSourceFactory())


def test_partner_key_authenticates_on_a_partner_endpoint() -> None:
    client = partner_client(PartnerFactory())

    response = client.get(LEADS_URL)

    assert response.status_code == 200, response.content


@pytest.mark.parametrize(
    "header",
    [
        "Bearer dm_live_000000000000_not-a-real-secret",
        "Bearer nonsense",
        "Bearer a_b_c_d",
        "Token dm_live_000000000000_whatever",
        "Bearer ",
    ],
)
def test_unknown_or_malformed_key_is_401_in_the_error_shape(header: str) -> None:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=header)

    response = client.get(LEADS_URL)

    assert response.status_code == 401
    assert_error_shape(response.json(), "authentication_failed")


def test_right_lookup_prefix_with_a_wrong_secret_is_401() -> None:
    issued = issue_api_key(partner=PartnerFactory())
    tampered = issued.plaintext[:-4] + ("AAAA" if not issued.plaintext.endswith("AAAA") else "BBBB")

    response = bearer(tampered).get(LEADS_URL)

    assert response.status_code == 401
    assert_error_shape(response.json(), "authentication_failed")
    assert authenticate_key(tampered) is None


def test_revoked_key_is_401() -> None:
    issued = issue_api_key(partner=PartnerFactory())
    assert bearer(issued.plaintext).get(LEADS_URL).status_code == 200

    revoke_api_key(api_key=issued.api_key)
    response = bearer(issued.plaintext).get(LEADS_URL)

    assert response.status_code == 401
    assert_error_shape(response.json(), "authentication_failed")


def test_missing_authorization_header_is_401_with_bearer_challenge() -> None:
    response = APIClient().get(LEADS_URL)

    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Bearer"
    assert_error_shape(response.json(), "not_authenticated")


def test_missing_authorization_header_on_referrals_is_401() -> None:
    response = APIClient().post(REFERRALS_URL, referral_payload(), format="json")

    assert response.status_code == 401
    assert_error_shape(response.json(), "not_authenticated")


def test_source_key_on_a_partner_endpoint_is_403(source_client: APIClient) -> None:
    response = source_client.get(LEADS_URL)

    assert response.status_code == 403
    assert_error_shape(response.json(), "permission_denied")


def test_partner_key_cannot_create_referrals(consent_text: object) -> None:
    from marketplace.models import Referral

    client = partner_client(PartnerFactory())

    response = client.post(REFERRALS_URL, referral_payload(), format="json")

    assert response.status_code == 403
    assert_error_shape(response.json(), "permission_denied")
    assert Referral.objects.count() == 0


def test_successful_authentication_sets_last_used_at() -> None:
    issued = issue_api_key(partner=PartnerFactory())
    assert issued.api_key.last_used_at is None
    before = timezone.now()

    assert bearer(issued.plaintext).get(LEADS_URL).status_code == 200

    issued.api_key.refresh_from_db()
    assert issued.api_key.last_used_at is not None
    assert issued.api_key.last_used_at >= before


def test_last_used_at_is_refreshed_only_once_per_resolution_window() -> None:
    issued = issue_api_key(partner=PartnerFactory())
    recent = timezone.now() - timedelta(seconds=5)
    stale = timezone.now() - timedelta(hours=1)

    ApiKey.objects.filter(pk=issued.api_key.pk).update(last_used_at=recent)
    authenticate_key(issued.plaintext)
    issued.api_key.refresh_from_db()
    assert issued.api_key.last_used_at == recent

    ApiKey.objects.filter(pk=issued.api_key.pk).update(last_used_at=stale)
    authenticate_key(issued.plaintext)
    issued.api_key.refresh_from_db()
    assert issued.api_key.last_used_at > stale


def test_failed_authentication_does_not_touch_last_used_at() -> None:
    issued = issue_api_key(partner=PartnerFactory())

    bearer(issued.plaintext + "x").get(LEADS_URL)

    issued.api_key.refresh_from_db()
    assert issued.api_key.last_used_at is None


def test_key_kind_matches_its_owner() -> None:
    assert issue_api_key(partner=PartnerFactory()).api_key.kind == KeyKind.PARTNER
    assert issue_api_key(source=TrafficSourceFactory()).api_key.kind == KeyKind.SOURCE


@pytest.mark.parametrize("scheme", ["bearer", "BEARER"])
def test_auth_scheme_is_case_insensitive(scheme: str) -> None:
    issued = issue_api_key(partner=PartnerFactory())
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"{scheme} {issued.plaintext}")

    response = client.get(LEADS_URL)

    assert response.status_code == 200, response.content


def test_admin_shows_an_issued_key_once_and_never_again(admin_client: Any) -> None:
    partner = PartnerFactory()

    issued = admin_client.post(
        "/admin/partners/partner/",
        {"action": "issue_live_key", "_selected_action": [str(partner.pk)]},
        follow=True,
    )

    (message,) = [str(m) for m in issued.context["messages"]]
    plaintext = re.search(r"\b(\S+_live_\S+)$", message)
    assert plaintext is not None, message
    key = plaintext.group(1)
    assert authenticate_key(key) is not None
    row = ApiKey.objects.get(partner=partner)
    for url in (
        "/admin/partners/apikey/",
        f"/admin/partners/apikey/{row.pk}/change/",
        f"/admin/partners/partner/{partner.pk}/change/",
    ):
        page = admin_client.get(url)
        assert page.status_code == 200, url
        assert key not in page.content.decode()
        assert row.key_hash not in page.content.decode()


def test_an_offboarded_partners_keys_stop_working(db: None) -> None:
    partner = PartnerFactory()
    client = partner_client(partner)
    assert client.get("/api/v1/partner/leads").status_code == 200
    Partner.objects.filter(pk=partner.pk).update(status=PartnerStatus.OFFBOARDED)
    response = client.get("/api/v1/partner/leads")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "authentication_failed"


def test_an_unexpected_error_is_a_json_500_without_details(
    db: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    from marketplace.api import leads

    def boom(request: object) -> object:
        raise RuntimeError("internal detail that must not leak")

    monkeypatch.setattr(leads, "partner_leads", boom)
    client = partner_client(PartnerFactory())
    client.raise_request_exception = False
    response = client.get("/api/v1/partner/leads")
    assert response.status_code == 500
    assert response.json()["error"]["code"] == "server_error"
    assert "internal detail" not in response.content.decode()
