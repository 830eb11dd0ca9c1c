"""A keyed intake whose database connection breaks mid-request (PostgreSQL restarted, a
failover) is run again on a new connection: the client gets its 201, and the referral is
stored once. The break is real: the request's own server process is terminated."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection
from rest_framework.test import APIClient

from consent import vault
from marketplace.models import Referral
from partners.models import IdempotencyRecord
from tests.factories import referral_payload
from tests.marketplace.conftest import api_post

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def _kill_own_backend_once(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The first vault write of the next request finds its connection terminated."""
    killed: list[int] = []
    store = vault.store_subject

    def store_after_a_restart(**kwargs: Any) -> Any:
        if not killed:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_backend_pid()")
                killed.append(cursor.fetchone()[0])
            # What a restart does to every server process: the next statement fails.
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_terminate_backend(pg_backend_pid())")
        return store(**kwargs)

    monkeypatch.setattr(vault, "store_subject", store_after_a_restart)
    return killed


def test_a_keyed_intake_that_loses_its_connection_answers_201_and_stores_one_referral(
    source_client: APIClient, partner: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    killed = _kill_own_backend_once(monkeypatch)
    body = referral_payload(source_reference="APP-RESTART-1")

    response = api_post(source_client, body, **{"Idempotency-Key": "restart-1"})
    retry = api_post(source_client, body, **{"Idempotency-Key": "restart-1"})

    assert killed, "the request's server process was not terminated"
    assert response.status_code == 201, response.content
    assert retry.status_code == 201 and retry.json() == response.json()
    assert Referral.objects.count() == 1
    assert IdempotencyRecord.objects.count() == 1
