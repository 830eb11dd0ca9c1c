"""Volume caps are counted atomically: concurrent referrals never overshoot a product's daily
or monthly cap (PostgreSQL only; SQLite serialises writes, so it cannot show the race).
The daily cap alone is also raced in test_concurrency.py."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from django.utils import timezone

from marketplace.models import Lead, Referral
from partners.models import TrafficSource
from tests.concurrency import run_concurrently
from tests.factories import ProductFactory, referral_payload
from tests.marketplace.conftest import create_referral

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

RACERS = 8


@pytest.fixture
def no_delivery(monkeypatch: pytest.MonkeyPatch) -> None:
    """Leads stay matched: intake commits here, so the on-commit delivery would run."""
    monkeypatch.setattr("marketplace.tasks.deliver_lead", SimpleNamespace(delay=lambda _: None))


def race(source: TrafficSource) -> list[Referral | BaseException]:
    return run_concurrently(
        *(lambda: create_referral(source, referral_payload()) for _ in range(RACERS))
    )


def test_monthly_cap_holds_under_concurrent_referrals(
    source: TrafficSource, consent_text: object, no_delivery: None
) -> None:
    capped = ProductFactory(monthly_cap=3)

    results = race(source)

    assert all(isinstance(result, Referral) for result in results), results
    assert Lead.objects.filter(product=capped).count() == 3


def test_daily_and_monthly_caps_together_hold_and_the_overflow_goes_elsewhere(
    source: TrafficSource, consent_text: object, no_delivery: None
) -> None:
    """Earlier leads this month count against the monthly cap; the daily cap is tighter
    today. Every referral still finds the uncapped partner: a full product is skipped, not
    the referral."""
    monthly = ProductFactory(monthly_cap=4, apr_min="0.0900")
    daily = ProductFactory(daily_cap=2, apr_min="0.1000")
    spare = ProductFactory(apr_min="0.1200")
    earlier = [create_referral(source, referral_payload()) for _ in range(2)]
    month_start = timezone.now().replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    # Two of this month's leads on the monthly product, made before today (or at the
    # month's first instant, when today is the first); the others' earlier leads go.
    Lead.objects.filter(referral__in=earlier, product=monthly).update(created_at=month_start)
    Lead.objects.filter(referral__in=earlier).exclude(product=monthly).delete()
    assert Lead.objects.filter(product=monthly).count() == 2

    results = race(source)

    assert all(isinstance(result, Referral) for result in results), results
    assert Lead.objects.filter(product=monthly).count() == 4
    assert Lead.objects.filter(product=daily).count() == 2
    assert Lead.objects.filter(product=spare).count() == RACERS
