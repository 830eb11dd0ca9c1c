"""API requests ride out a lost database connection (PostgreSQL restarted, a failover):
``partners.reconnect`` runs a request that is safe to repeat (a read, a keyed request, a
partner's event) again from the start, authentication included, on a new connection; any
other request answers 503 with Retry-After in the error shape, never run twice, never 500.

The loss is simulated in two places a restart hits: a statement (a connection execute
wrapper raises what Django raises for psycopg's "terminating connection" for chosen
statements) and COMMIT itself, after the commit went through (the answer is lost, not the
work). The last test terminates the request's own server process on PostgreSQL.
Each test commits (transaction=True): a test's own transaction could not be reconnected.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import psycopg.errors
import pytest
from django.db import InterfaceError, OperationalError, connection, connections
from django.utils import timezone
from rest_framework.test import APIClient

from billing.models import Charge
from consent import vault
from marketplace.models import Lead, LeadEvent, Referral
from partners import reconnect
from partners.models import IdempotencyRecord, Partner
from tests.conftest import partner_client
from tests.factories import FeeScheduleFactory, referral_payload
from tests.marketplace.conftest import api_post, error_body

pytestmark = pytest.mark.django_db(transaction=True)

LEADS_URL = "/api/v1/partner/leads"


def _lost() -> OperationalError:
    """What Django raises when PostgreSQL terminates the session (pg_ctl restart -m fast)."""
    error = OperationalError("terminating connection due to administrator command")
    error.__cause__ = psycopg.errors.AdminShutdown(
        "terminating connection due to administrator command"
    )
    return error


class Executions:
    """Counts the statements run on the connection; those numbered in ``fail`` raise."""

    def __init__(self, fail: set[int]) -> None:
        self.fail = fail
        self.count = 0
        self.failed = 0

    def __call__(
        self, execute: Callable[..., Any], sql: str, params: Any, many: bool, context: Any
    ) -> Any:
        self.count += 1
        if self.count in self.fail:
            self.failed += 1
            raise _lost()
        return execute(sql, params, many, context)


@contextmanager
def statements_failing(*numbers: int) -> Iterator[Executions]:
    """The next request's statements with these numbers (from 1) find the connection lost."""
    executions = Executions(set(numbers))
    with connection.execute_wrapper(executions):
        yield executions


@pytest.fixture
def commit_answer_lost(monkeypatch: pytest.MonkeyPatch) -> Callable[[], list[int]]:
    """Arm: the next COMMIT goes through, then its answer is lost (the connection breaks
    before the server's reply is read): the work is done, the client does not know."""

    def arm() -> list[int]:
        wrapper = connections["default"]
        real_commit = wrapper.commit
        lost: list[int] = []

        def commit() -> None:
            real_commit()
            if not lost:
                lost.append(1)
                raise _lost()

        monkeypatch.setattr(wrapper, "commit", commit)
        return lost

    return arm


@pytest.fixture
def no_pauses(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The middleware's clock and sleep, simulated: pauses are recorded, not slept."""
    slept: list[float] = []

    class Clock:
        now = 1000.0

        @classmethod
        def monotonic(cls) -> float:
            return cls.now

        @classmethod
        def sleep(cls, seconds: float) -> None:
            slept.append(seconds)
            cls.now += seconds

    monkeypatch.setattr(reconnect, "time", Clock)
    return slept


def _unkeyed_payload() -> dict[str, Any]:
    body = referral_payload()
    body.pop("source_reference", None)  # nothing but the key could tell a repeat
    return body


# --------------------------------------------------------------------------- reads


def test_authentication_that_loses_its_connection_runs_again_and_answers(
    partner: Partner, no_pauses: list[float]
) -> None:
    client = partner_client(partner)
    # Statements 1 and 2 are the first two runs' API key lookups: authentication itself.
    with statements_failing(1, 2) as executions:
        response = client.get(LEADS_URL)

    assert executions.failed == 2
    assert response.status_code == 200, response.content
    assert no_pauses == [0.25, 0.5]


def test_a_read_still_failing_when_the_budget_is_spent_answers_503_in_the_error_shape(
    partner: Partner, no_pauses: list[float]
) -> None:
    client = partner_client(partner)
    with statements_failing(*range(1, 1000)) as executions:
        response = client.get(LEADS_URL)

    assert response.status_code == 503
    assert response["Retry-After"] == str(reconnect.RETRY_AFTER_SECONDS)
    assert error_body(response)["code"] == "database_unavailable"
    # Runs with pauses between them until the next pause would pass the budget.
    assert executions.failed == len(no_pauses) + 1 > 2
    assert sum(no_pauses) <= reconnect.RECONNECT_BUDGET_SECONDS
    assert sum(no_pauses) + reconnect.RECONNECT_PAUSES[-1] > reconnect.RECONNECT_BUDGET_SECONDS


# --------------------------------------------------------------------------- keyed intake


@pytest.mark.parametrize(
    "failing",
    [
        pytest.param((1,), id="in-authentication"),
        pytest.param((12,), id="mid-intake"),
        pytest.param((1, 13, 30), id="three-times"),
    ],
)
def test_a_keyed_referral_that_loses_its_connection_is_stored_once(
    source_client: APIClient, partner: Partner, no_pauses: list[float], failing: tuple[int, ...]
) -> None:
    body = referral_payload(source_reference=f"APP-{uuid.uuid4().hex[:8]}")
    with statements_failing(*failing) as executions:
        response = api_post(source_client, body, **{"Idempotency-Key": "lost-1"})
    retry = api_post(source_client, body, **{"Idempotency-Key": "lost-1"})

    assert executions.failed == len(failing), "the request ran fewer statements than chosen"
    assert response.status_code == 201, response.content
    assert retry.status_code == 201 and retry.json() == response.json()
    assert Referral.objects.count() == 1
    assert Lead.objects.count() == 1
    assert IdempotencyRecord.objects.count() == 1


def test_a_keyed_referral_whose_commit_answer_is_lost_replays_its_response(
    source_client: APIClient,
    partner: Partner,
    no_pauses: list[float],
    commit_answer_lost: Callable[[], list[int]],
) -> None:
    body = _unkeyed_payload()
    lost = commit_answer_lost()

    response = api_post(source_client, body, **{"Idempotency-Key": "commit-lost-1"})

    assert lost, "no COMMIT lost its answer"
    assert response.status_code == 201, response.content
    assert response["Idempotent-Replayed"] == "true"  # the second run found the first's record
    assert Referral.objects.count() == 1
    assert IdempotencyRecord.objects.count() == 1


# --------------------------------------------------------------------------- unsafe requests


def test_an_unkeyed_referral_is_never_run_again_and_answers_503(
    source_client: APIClient,
    partner: Partner,
    no_pauses: list[float],
    commit_answer_lost: Callable[[], list[int]],
) -> None:
    lost = commit_answer_lost()

    response = api_post(source_client, _unkeyed_payload())

    assert lost
    assert response.status_code == 503
    assert response["Retry-After"] == str(reconnect.RETRY_AFTER_SECONDS)
    error = error_body(response)
    assert error["code"] == "database_unavailable" and "Idempotency-Key" in error["message"]
    assert no_pauses == []  # not run again: the one run's referral is the only one
    assert Referral.objects.count() == 1


def test_an_unkeyed_referral_that_loses_its_connection_in_authentication_answers_503(
    source_client: APIClient, partner: Partner, no_pauses: list[float]
) -> None:
    with statements_failing(1) as executions:
        response = api_post(source_client, _unkeyed_payload())

    assert executions.failed == 1 and executions.count == 1  # one run, stopped at its key
    assert response.status_code == 503
    assert error_body(response)["code"] == "database_unavailable"
    assert Referral.objects.count() == 0


# --------------------------------------------------------------------------- partner events


@pytest.fixture
def lead(delivered: Callable[[Partner], Lead], partner: Partner) -> Lead:
    FeeScheduleFactory(partner=partner)  # accepted is billed: CPL
    return delivered(partner)


def _accepted(event_id: str) -> dict[str, Any]:
    return {"event_id": event_id, "type": "accepted", "occurred_at": timezone.now().isoformat()}


@pytest.mark.parametrize("keyed", [False, True], ids=["unkeyed", "keyed"])
def test_an_event_whose_commit_answer_is_lost_is_stored_and_charged_once(
    lead: Lead,
    partner: Partner,
    no_pauses: list[float],
    commit_answer_lost: Callable[[], list[int]],
    keyed: bool,
) -> None:
    client = partner_client(partner)
    url = f"{LEADS_URL}/{lead.id}/events"
    headers = {"Idempotency-Key": "evt-acc-1"} if keyed else {}
    lost = commit_answer_lost()

    body = _accepted("evt-acc-1")
    response = client.post(url, body, format="json", headers=headers)
    again = client.post(url, body, format="json", headers=headers)  # the partner's own retry

    assert lost
    # The second run found the first's event (unkeyed: by its event id; keyed: the record).
    assert response.status_code in {200, 201}, response.content
    assert response.json()["event_id"] == "evt-acc-1"
    assert again.status_code in {200, 201} and again.json()["id"] == response.json()["id"]
    assert LeadEvent.objects.filter(lead=lead).count() == 1
    assert Charge.objects.filter(lead=lead, entry_type="charge").count() == 1


def test_an_event_that_loses_its_connection_in_authentication_is_run_again(
    lead: Lead, partner: Partner, no_pauses: list[float]
) -> None:
    client = partner_client(partner)
    url = f"{LEADS_URL}/{lead.id}/events"
    with statements_failing(1, 2) as executions:
        response = client.post(url, _accepted("evt-acc-2"), format="json")

    assert executions.failed == 2
    assert response.status_code == 201, response.content
    assert LeadEvent.objects.filter(lead=lead).count() == 1
    assert Charge.objects.filter(lead=lead, entry_type="charge").count() == 1


# --------------------------------------------------------------------------- which errors


@pytest.mark.parametrize(
    ("error", "lost"),
    [
        pytest.param(_lost(), True, id="admin-shutdown"),
        pytest.param(InterfaceError("connection already closed"), True, id="closed"),
        pytest.param(
            OperationalError("canceling statement due to statement timeout"),
            False,
            id="statement-timeout",
        ),
    ],
)
def test_only_a_lost_connection_counts_as_lost(error: Exception, lost: bool) -> None:
    if not lost:
        error.__cause__ = psycopg.errors.QueryCanceled("canceling statement")
    assert reconnect.connection_lost(error) is lost


# --------------------------------------------------------------------------- a real restart


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


@pytest.mark.postgres
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


# --------------------------------------------------------------------------- consent withdrawal


def test_an_unkeyed_withdrawal_whose_commit_answer_is_lost_answers_its_receipt_once(
    source_client: APIClient,
    partner: Partner,
    no_pauses: list[float],
    commit_answer_lost: Callable[[], list[int]],
) -> None:
    from consent.models import ConsentWithdrawal, LedgerEntry

    referred = api_post(source_client, _unkeyed_payload())
    assert referred.status_code == 201, referred.content
    receipt_id = referred.json()["consent_receipt"]["receipt_id"]
    entries = LedgerEntry.objects.filter(kind="consent.withdrawn").count()
    lost = commit_answer_lost()

    response = source_client.post(
        f"/api/v1/consents/{receipt_id}/withdraw", {"reason": "asked by phone"}, format="json"
    )

    assert lost
    # Run again on a new connection: the first run's withdrawal is found, not made twice.
    assert no_pauses, "the withdrawal was not run again"
    assert response.status_code == 200, response.content
    assert response.json()["status"] == "withdrawn"
    assert ConsentWithdrawal.objects.filter(grant_id=receipt_id).count() == 1
    assert LedgerEntry.objects.filter(kind="consent.withdrawn").count() == entries + 1
