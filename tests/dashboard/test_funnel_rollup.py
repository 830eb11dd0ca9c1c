"""The daily funnel aggregates equal a plain count of the raw rows (hypothesis: random
referrals, leads, events, reversals, pings and post attempts on random days), whatever
the order and number of rollup runs; days before the window stay as they were."""

from __future__ import annotations

import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.db import transaction
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from marketplace.bands import income_band_floor
from marketplace.models import (
    AttemptOutcome,
    Auction,
    AuctionMode,
    DailyFunnel,
    DeliveryAttempt,
    Lead,
    LeadEvent,
    LeadStatus,
    PingAttempt,
    Referral,
    ReferralStatus,
)
from marketplace.stats import rollup_funnel
from partners.models import DeliveryMode, Product
from tests.billing.builders import LeadBuilder
from tests.factories import PartnerFactory, ProductFactory

NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
WINDOW = 3  # days recomputed: offsets 0, 1, 2 before NOW's day
OUTCOMES = ["accepted", "approved", "funded", "returned", "rejected"]


def at(offset: int, second: int) -> datetime:
    """A time ``offset`` days before NOW's day (0 = that day), ``second`` into it."""
    day = NOW.date() - timedelta(days=offset)
    return datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(seconds=second)


days = st.integers(0, 4)
seconds = st.sampled_from([0, 1, 43_200, 86_399])  # the edges of a day too


@dataclass
class EventSpec:
    type: str
    day: int
    second: int
    reversed_on: tuple[int, int] | None


@dataclass
class LeadSpec:
    product: int
    day: int
    second: int
    delivered: tuple[int, int] | None
    events: list[EventSpec]
    failures: list[tuple[int, int]]


@dataclass
class ReferralSpec:
    day: int
    second: int
    channel: str
    tier: str
    sandbox: bool
    leads: list[LeadSpec] = field(default_factory=list)
    pings: list[tuple[int, int, int, bool, int]] = field(default_factory=list)


events = st.builds(
    EventSpec,
    type=st.sampled_from(OUTCOMES),
    day=days,
    second=seconds,
    reversed_on=st.none() | st.tuples(days, seconds),
)
leads = st.builds(
    LeadSpec,
    product=st.integers(0, 2),
    day=days,
    second=seconds,
    delivered=st.none() | st.tuples(days, seconds),
    events=st.lists(events, max_size=3),
    failures=st.lists(st.tuples(days, seconds), max_size=2),
)
referrals = st.builds(
    ReferralSpec,
    day=days,
    second=seconds,
    channel=st.sampled_from(["app", "web"]),
    tier=st.sampled_from(["R4", "R6"]),
    sandbox=st.booleans(),
    leads=st.lists(
        leads, max_size=3, unique_by=lambda lead: lead.product % 2
    ),  # one lead per partner
    pings=st.lists(
        st.tuples(st.integers(0, 2), days, seconds, st.booleans(), st.integers(0, 5000)),
        max_size=3,
        unique_by=lambda ping: ping[0] % 2,  # one ping per partner
    ),
)


def expected(
    specs: list[ReferralSpec], products: list[Product]
) -> dict[tuple[Any, ...], Counter[str]]:
    """The reference: counted straight from what was generated, day by day (UTC)."""
    counts: dict[tuple[Any, ...], Counter[str]] = {}

    def add(
        offset: int, product: Product | None, spec: ReferralSpec, what: str, n: int = 1
    ) -> None:
        if offset >= WINDOW:
            return
        key = (
            NOW.date() - timedelta(days=offset),
            product.partner_id if product else None,
            product.id if product else None,
            spec.channel,
            spec.tier,
            spec.sandbox,
        )
        counts.setdefault(key, Counter())[what] += n

    for spec in specs:
        add(spec.day, None, spec, "referred")
        for lead in spec.leads:
            product = products[lead.product]
            add(lead.day, product, spec, "matched")
            if lead.delivered:
                add(lead.delivered[0], product, spec, "delivered")
            for event in lead.events:
                if event.type == "rejected":
                    continue
                add(event.day, product, spec, event.type)
                if event.reversed_on:
                    add(event.reversed_on[0], product, spec, event.type, -1)
            for failure in lead.failures:
                add(failure[0], product, spec, "delivery_failures")
        for index, day, _, timeout, latency in spec.pings:
            add(day, products[index], spec, "pings")
            add(day, products[index], spec, "ping_timeouts", int(timeout))
            add(day, products[index], spec, "ping_latency_ms_sum", latency)
    nonzero = {key: Counter({k: v for k, v in c.items() if v}) for key, c in counts.items()}
    return {key: counter for key, counter in nonzero.items() if counter}


def store(specs: list[ReferralSpec], products: list[Product], builder: LeadBuilder) -> None:
    """The raw rows, written as the platform writes them, then dated as generated."""
    for spec in specs:
        source, subject, grant = builder._shared(is_sandbox=spec.sandbox)
        referral = Referral.objects.create(
            source=source,
            subject=subject,
            grant=grant,
            is_sandbox=spec.sandbox,
            amount=Decimal("8000.00"),
            term_months=12,
            purpose="consumption",
            risk_tier=spec.tier,
            decline_reason="outside_risk_appetite",
            channel=spec.channel,
            region="CN-GD",
            age=36,
            income_band_floor=income_band_floor(Decimal("8500.00")),
            employment_type="employed",
            status=ReferralStatus.DISTRIBUTED,
        )
        Referral.objects.filter(pk=referral.pk).update(created_at=at(spec.day, spec.second))
        if spec.pings:
            auction = Auction.objects.create(
                referral=referral, mode=AuctionMode.EXCLUSIVE, max_winners=1, budget_ms=800
            )
            for index, day, second, timeout, latency in spec.pings:
                PingAttempt.objects.create(
                    auction=auction,
                    partner=products[index].partner,
                    product=products[index],
                    ping_id=f"png_{uuid.uuid4().hex}",
                    url="https://partner.example/ping",
                    started_at=at(day, second),
                    latency_ms=latency,
                    outcome=AttemptOutcome.ERROR if timeout else AttemptOutcome.SUCCESS,
                    reason="timed out (ping timeout 500 ms)" if timeout else "",
                )
        for lead_spec in spec.leads:
            product = products[lead_spec.product]
            lead = Lead.objects.create(
                referral=referral,
                partner=product.partner,
                product=product,
                subject=subject,
                is_sandbox=spec.sandbox,
                delivery_mode=DeliveryMode.DIRECT_POST,
                status=LeadStatus.DELIVERED if lead_spec.delivered else LeadStatus.MATCHED,
                delivered_at=at(*lead_spec.delivered) if lead_spec.delivered else None,
            )
            Lead.objects.filter(pk=lead.pk).update(created_at=at(lead_spec.day, lead_spec.second))
            for day, second in lead_spec.failures:
                DeliveryAttempt.objects.create(
                    lead=lead,
                    url="https://partner.example/post",
                    started_at=at(day, second),
                    latency_ms=10,
                    http_status=503,
                    outcome=AttemptOutcome.ERROR,
                )
            DeliveryAttempt.objects.create(  # a success is never a failure
                lead=lead,
                url="https://partner.example/post",
                started_at=at(lead_spec.day, lead_spec.second),
                latency_ms=10,
                http_status=200,
                outcome=AttemptOutcome.SUCCESS,
            )
            for event_spec in lead_spec.events:
                event = LeadEvent.objects.create(
                    lead=lead,
                    partner=product.partner,
                    external_id=f"evt-{uuid.uuid4()}",
                    type=event_spec.type,
                    occurred_at=at(4, 0),  # never what dates a figure
                    reason="policy" if event_spec.type in ("rejected", "returned") else "",
                )
                LeadEvent.objects.filter(pk=event.pk).update(
                    received_at=at(event_spec.day, event_spec.second)
                )
                if event_spec.reversed_on:
                    reversal = LeadEvent.objects.create(
                        lead=lead,
                        partner=product.partner,
                        external_id=f"rev-{uuid.uuid4()}",
                        type="reversal",
                        occurred_at=at(4, 0),
                        reverses=event,
                    )
                    LeadEvent.objects.filter(pk=reversal.pk).update(
                        received_at=at(*event_spec.reversed_on)
                    )


def stored() -> dict[tuple[Any, ...], Counter[str]]:
    fields = [
        "referred",
        "matched",
        "delivered",
        "accepted",
        "approved",
        "funded",
        "returned",
        "pings",
        "ping_timeouts",
        "ping_latency_ms_sum",
        "delivery_failures",
    ]
    result: dict[tuple[Any, ...], Counter[str]] = {}
    for row in DailyFunnel.objects.exclude(day__lt=NOW.date() - timedelta(days=WINDOW - 1)):
        key = (row.day, row.partner_id, row.product_id, row.channel, row.risk_tier, row.is_sandbox)
        assert key not in result
        counter = Counter({name: getattr(row, name) for name in fields})
        result[key] = Counter({k: v for k, v in counter.items() if v})
    return result


@pytest.fixture
def world(db: None) -> tuple[list[Product], LeadBuilder]:
    products = [ProductFactory(partner=PartnerFactory()) for _ in range(2)]
    products.append(ProductFactory(partner=products[0].partner))  # two products, one partner
    builder = LeadBuilder()
    builder._shared(is_sandbox=False)
    builder._shared(is_sandbox=True)
    return products, builder


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(specs=st.lists(referrals, max_size=6), runs=st.integers(1, 2))
def test_rollup_equals_a_plain_count_of_the_raw_rows(
    world: tuple[list[Product], LeadBuilder], specs: list[ReferralSpec], runs: int
) -> None:
    products, builder = world
    with transaction.atomic():
        frozen = DailyFunnel.objects.create(
            day=NOW.date() - timedelta(days=WINDOW),
            channel="app",
            risk_tier="R4",
            is_sandbox=False,
            referred=7,
        )
        store(specs, products, builder)
        for _ in range(runs):  # repeating a run changes nothing
            rollup_funnel(days=WINDOW, now=NOW)
        assert stored() == expected(specs, products)
        frozen.refresh_from_db()  # the day before the window is left as it was
        assert frozen.referred == 7
        transaction.set_rollback(True)


def test_a_row_arriving_later_for_a_day_in_the_window_is_counted_at_the_next_run(
    world: tuple[list[Product], LeadBuilder],
) -> None:
    products, builder = world
    spec = ReferralSpec(day=1, second=5, channel="app", tier="R4", sandbox=False)
    store([spec], products, builder)
    rollup_funnel(days=WINDOW, now=NOW)
    store([spec], products, builder)  # committed later, dated yesterday
    rollup_funnel(days=WINDOW, now=NOW)
    row = DailyFunnel.objects.get(day=NOW.date() - timedelta(days=1), partner=None)
    assert row.referred == 2


def test_the_nightly_pass_reaches_further_back_than_the_minute_run(
    world: tuple[list[Product], LeadBuilder],
) -> None:
    products, builder = world
    store(
        [ReferralSpec(day=4, second=5, channel="web", tier="R6", sandbox=True)], products, builder
    )
    rollup_funnel(days=WINDOW, now=NOW)
    old_day: date = NOW.date() - timedelta(days=4)
    assert not DailyFunnel.objects.filter(day=old_day).exists()
    rollup_funnel(days=7, now=NOW)
    assert DailyFunnel.objects.get(day=old_day).referred == 1
