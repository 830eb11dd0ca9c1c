"""A rate limit per API key: over it the API answers 429 with Retry-After, in the one
error shape; the limit is the key's own or the settings default (partner keys)."""

from __future__ import annotations

import uuid

import pytest
from rest_framework.test import APIClient

from partners.keys import issue_api_key
from partners.models import ApiKey, Partner
from partners.throttling import rate_limit_per_minute
from tests.conftest import partner_client
from tests.factories import TrafficSourceFactory

ME = "/api/v1/partner/me"


def limit_key(client: APIClient, per_minute: int) -> None:
    prefix = client.key.split("_")[2]  # type: ignore[attr-defined]
    ApiKey.objects.filter(prefix=prefix).update(rate_limit_per_minute=per_minute)


def test_key_over_its_limit_gets_429_with_retry_after_in_the_error_shape(partner: Partner):
    client = partner_client(partner)
    limit_key(client, 2)

    statuses = [client.get(ME).status_code for _ in range(2)]
    response = client.get(ME)

    assert statuses == [200, 200]
    assert response.status_code == 429
    assert 1 <= int(response["Retry-After"]) <= 60
    body = response.json()
    assert set(body) == {"error"}
    assert body["error"]["code"] == "throttled"
    assert "available in" in body["error"]["message"]
    assert body["error"]["details"] == {}


def test_limit_counts_per_key_not_per_partner(partner: Partner):
    limited = partner_client(partner)
    limit_key(limited, 1)
    other_key = partner_client(partner)

    assert limited.get(ME).status_code == 200
    assert limited.get(ME).status_code == 429
    assert other_key.get(ME).status_code == 200


def test_throttled_requests_fail_before_the_handler_runs(partner: Partner):
    """A throttled POST changes nothing: throttling runs before the view's handler."""
    client = partner_client(partner)
    limit_key(client, 0)
    product = partner.products.get()

    response = client.post(
        f"/api/v1/partner/products/{product.id}/change-requests",
        {"max_amount": "60000.00"},
        format="json",
    )

    assert response.status_code == 429
    assert not product.change_requests.exists()


def test_partner_keys_without_their_own_limit_use_the_settings_default(partner, settings):
    settings.API_RATE_LIMIT_PER_MINUTE = 3
    client = partner_client(partner)

    assert [client.get(ME).status_code for _ in range(4)] == [200, 200, 200, 429]


def test_a_keys_own_limit_overrides_the_default(partner, settings):
    settings.API_RATE_LIMIT_PER_MINUTE = 1
    client = partner_client(partner)
    limit_key(client, 5)

    assert [client.get(ME).status_code for _ in range(6)] == [200] * 5 + [429]


def test_me_reports_the_calling_keys_effective_limit(partner, settings):
    settings.API_RATE_LIMIT_PER_MINUTE = 42
    client = partner_client(partner)

    assert client.get(ME).json()["key"]["rate_limit_per_minute"] == 42


@pytest.mark.django_db
def test_source_keys_are_unlimited_unless_the_key_sets_a_limit(settings):
    settings.API_RATE_LIMIT_PER_MINUTE = 1
    issued = issue_api_key(source=TrafficSourceFactory())
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {issued.plaintext}")
    url = f"/api/v1/referrals/{uuid.uuid4()}"

    assert rate_limit_per_minute(issued.api_key) is None
    assert [client.get(url).status_code for _ in range(3)] == [404, 404, 404]

    ApiKey.objects.filter(pk=issued.api_key.pk).update(rate_limit_per_minute=1)
    assert [client.get(url).status_code for _ in range(2)] == [404, 429]


@pytest.mark.django_db
def test_unauthenticated_requests_are_refused_not_throttled(settings):
    settings.API_RATE_LIMIT_PER_MINUTE = 0
    response = APIClient().get(ME)
    assert response.status_code in {401, 403}
    assert response.json()["error"]["code"] != "throttled"
