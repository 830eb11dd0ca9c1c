"""Daily revenue equals the charge ledger summed by the day each entry was booked, per
partner, fee type and currency (hypothesis: random events through billing's real path,
booked on random days)."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.db import transaction
from django.utils import timezone
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
        st.lists(st.integers(0, 3), min_size=3, max_size=3),  # booking day of each entry
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
    partners: list[Partner], histories: list[tuple[int, int, bool, list[int]]]
) -> None:
    builder = LeadBuilder()
    with transaction.atomic():
        for partner_index, reached, returned, days in histories:
            lead = builder.lead(partner=partners[partner_index])
            events = ["accepted", "approved", "funded"][:reached]
            for event_type in events + (["returned"] if returned and events else []):
                post(lead, report(event_type, timezone.now() - timedelta(minutes=5)))
            for charge, day in zip(
                Charge.objects.filter(lead=lead).order_by("created_at", "seq"), days, strict=False
            ):
                Charge.objects.filter(pk=charge.pk).update(
                    created_at=datetime.combine(
                        NOW.date() - timedelta(days=day), datetime.min.time(), tzinfo=UTC
                    )
                    + timedelta(hours=23, minutes=59)
                )
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
