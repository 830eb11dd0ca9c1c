"""The partner event POST's database round trips, pinned: one accepted event, charged.

Measured on PostgreSQL by ``bench/bench_events.py`` (the same request outside a test
transaction): 10 round trips, BEGIN and COMMIT included, no savepoint. 26 with 2
savepoints before the lead was read once, locked with its referral's currency, its events
read once for the checks, the replay and the charging, the insert made conflict-safe
without a savepoint, and the response built from memory; 13 before the late-unit count
was skipped for untiered months, the ledger read skipped for a lead's first event and
the fee schedules read with the billing row's lock (PostgreSQL; SQLite reads them
apart). Inside the test's transaction report_outcome's atomic block is a savepoint
instead of BEGIN/COMMIT: the same count."""

from __future__ import annotations

from collections.abc import Callable

from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from billing.models import Charge
from marketplace.models import Lead, LeadEvent
from partners.models import Partner
from tests.billing.builders import schedule
from tests.marketplace.conftest import report_event

ROUND_TRIPS = 10


def test_an_accepted_event_is_stored_and_charged_in_a_bounded_number_of_round_trips(
    client: APIClient, partner: Partner, delivered: Callable[[Partner], Lead]
) -> None:
    schedule(partner)
    report_event(client, delivered(partner), "accepted")  # warm: the key, the schedule
    lead = delivered(partner)

    with CaptureQueriesContext(connection) as captured:
        response = report_event(client, lead, "accepted", "e-acc")

    assert response.status_code == 201, response.content
    sqls = [query["sql"] for query in captured.captured_queries]
    # SQLite reads the fee schedules apart from the billing row (no row locks there).
    limit = ROUND_TRIPS if connection.vendor == "postgresql" else ROUND_TRIPS + 1
    assert len(sqls) <= limit, "\n".join(sqls)
    # One savepoint pair: report_outcome's own block (BEGIN/COMMIT outside a test).
    assert sum(sql.startswith("SAVEPOINT") for sql in sqls) <= 1
    # The response is built from memory: nothing is read once the transaction ends.
    assert sqls[-1].startswith("RELEASE SAVEPOINT"), sqls[-1]
    assert Charge.objects.filter(lead=lead, event__external_id="e-acc").count() == 1
    assert response.json()["event_id"] == "e-acc"
    assert response.json()["reversed_by"] is None
    assert LeadEvent.objects.filter(lead=lead).count() == 1
