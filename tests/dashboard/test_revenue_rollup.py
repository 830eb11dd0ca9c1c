"""Daily revenue equals the charge ledger summed by the day each entry was booked, per
partner, fee type and currency (hypothesis: random events through billing's real path,
booked on random days)."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from unittest import mock

import pytest
from django.db import transaction
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from billing.daily_revenue import DailyRevenue
from billing.models import Charge
from billing.stats import rollup_revenue
from partners.models import Partner
from tests.billing.builders import LeadBuilder, post, report, schedule
from tests.factories import PartnerFactory

NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
WINDOW = 2

lead_histories = st.lists(
    st.tuples(
        st.integers(0, 1),  # partner
        st.integers(0, 3),  # how far the lead got: accepted, approved, funded
        st.booleans(),  # then returned
        st.integers(0, 3),  # the day its entries are booked (days before NOW's)
    ),
    max_size=5,
)


@pytest.fixture
def partners(db: None) -> list[Partner]:
    found = [PartnerFactory(), PartnerFactory()]
    schedule(found[0])
    schedule(found[1], currency="USD")
    return found


@settings(
    max_examples=15,
    phases=[Phase.explicit, Phase.reuse, Phase.generate],  # shrinking a DB example: minutes
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(histories=lead_histories)
def test_daily_revenue_is_the_ledger_summed_by_booking_day(
    partners: list[Partner], histories: list[tuple[int, int, bool, int]]
) -> None:
    builder = LeadBuilder()
    with transaction.atomic():
        for partner_index, reached, returned, day in histories:
            # The ledger is append-only (a PostgreSQL trigger refuses any update), so the
            # entries are booked on their day: the clock is that day's 23:50 meanwhile.
            booked = datetime.combine(
                NOW.date() - timedelta(days=day), datetime.min.time(), tzinfo=UTC
            ) + timedelta(hours=23, minutes=50)
            with mock.patch("django.utils.timezone.now", return_value=booked):
                lead = builder.lead(partner=partners[partner_index])
                events = ["accepted", "approved", "funded"][:reached]
                for event_type in events + (["returned"] if returned and events else []):
                    post(lead, report(event_type, booked - timedelta(minutes=5)))
        rollup_revenue(days=WINDOW, now=NOW)

        expected: dict[tuple[object, ...], Decimal] = defaultdict(Decimal)
        first = NOW.date() - timedelta(days=WINDOW - 1)
        for charge in Charge.objects.all():
            day = charge.created_at.astimezone(UTC).date()
            if first <= day <= NOW.date():
                expected[(day, charge.partner_id, charge.kind, charge.currency)] += charge.amount
        got = {
            (row.day, row.partner_id, row.fee_type, row.currency): row.amount
            for row in DailyRevenue.objects.all()
        }
        assert got == dict(expected)
        transaction.set_rollback(True)
