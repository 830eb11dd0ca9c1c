"""Cap counters against an independent model: random sequences of awards, releases, charges
billed beyond the reservations and new days, applied both to ``marketplace.caps`` (the
database counters) and to a plain model of the caps written from the rule in its
docstring. After every step the award's answer, the counters and the cheap pre-filter
agree with the model. Runs on SQLite and on PostgreSQL."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import ROUND_CEILING, Decimal

import pytest
from django.db import transaction
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from marketplace import caps, fee_cards
from marketplace.models import CapCounter, CapKind, CapScope, Lead, LeadStatus
from partners.models import Partner, Product
from partners.months import month_of
from tests.billing.builders import LeadBuilder
from tests.factories import PartnerFactory, ProductFactory

pytestmark = pytest.mark.django_db


@dataclass(frozen=True)
class Spec:
    """A product under test, its caps and its CPL (in the card's currency)."""

    daily: int | None
    monthly: int | None
    product_budget: Decimal | None
    partner: int  # index into PARTNER_BUDGETS
    cpl: Decimal
    currency: str = "CNY"
    rate: Decimal | None = None  # the card's rate to CNY


PARTNER_BUDGETS = [Decimal("150.00"), Decimal("200.00"), None]
SPECS = [
    Spec(daily=3, monthly=5, product_budget=Decimal("100.00"), partner=0, cpl=Decimal("40.00")),
    Spec(daily=None, monthly=None, product_budget=None, partner=0, cpl=Decimal("25.00")),
    # A USD card: reserved at its rate to the budget currency, rounded up.
    Spec(
        daily=2,
        monthly=None,
        product_budget=None,
        partner=1,
        cpl=Decimal("10.00"),
        currency="USD",
        rate=Decimal("7.12345678"),
    ),
    Spec(daily=None, monthly=4, product_budget=None, partner=2, cpl=Decimal("30.00")),
]


def price_in_cny(spec: Spec, bid: Decimal | None) -> Decimal:
    if bid is not None:
        return bid  # bids here are in CNY
    if spec.currency == "CNY":
        return spec.cpl
    assert spec.rate is not None
    return (spec.cpl * spec.rate).quantize(Decimal("0.01"), rounding=ROUND_CEILING)


@dataclass
class Model:
    """The caps as the rule states them, in plain Python."""

    day: int = 0
    used_day: dict[tuple[int, int], int] = field(default_factory=dict)  # (product, day)
    used_month: dict[int, int] = field(default_factory=dict)
    reserved: dict[tuple[str, int], Decimal] = field(default_factory=dict)  # (scope, index)
    charged: dict[tuple[str, int], Decimal] = field(default_factory=dict)
    awards: list[tuple[int, int, Decimal, bool]] = field(default_factory=list)  # +released

    def budgets(self, index: int) -> list[tuple[tuple[str, int], Decimal]]:
        spec = SPECS[index]
        out = []
        if spec.product_budget is not None:
            out.append((("product", index), spec.product_budget))
        partner_budget = PARTNER_BUDGETS[spec.partner]
        if partner_budget is not None:
            out.append((("partner", spec.partner), partner_budget))
        return out

    def spent(self, owner: tuple[str, int]) -> Decimal:
        return self.reserved.get(owner, Decimal(0)) + self.charged.get(owner, Decimal(0))

    def full(self, index: int) -> bool:
        spec = SPECS[index]
        return (
            (spec.daily is not None and self.used_day.get((index, self.day), 0) >= spec.daily)
            or (spec.monthly is not None and self.used_month.get(index, 0) >= spec.monthly)
            or any(self.spent(owner) >= budget for owner, budget in self.budgets(index))
        )

    def award(self, index: int, price: Decimal) -> bool:
        spec = SPECS[index]
        if spec.daily is not None and self.used_day.get((index, self.day), 0) + 1 > spec.daily:
            return False
        if spec.monthly is not None and self.used_month.get(index, 0) + 1 > spec.monthly:
            return False
        for owner, budget in self.budgets(index):
            if self.spent(owner) + price > budget or self.spent(owner) >= budget:
                return False
        self.used_day[(index, self.day)] = self.used_day.get((index, self.day), 0) + 1
        self.used_month[index] = self.used_month.get(index, 0) + 1
        for owner, _ in self.budgets(index):
            self.reserved[owner] = self.reserved.get(owner, Decimal(0)) + price
        self.awards.append((index, self.day, price, False))
        return True

    def release(self, award: int) -> bool:
        index, day, price, released = self.awards[award]
        if released:
            return False
        self.awards[award] = (index, day, price, True)
        self.used_day[(index, day)] -= 1
        self.used_month[index] -= 1
        for owner, _ in self.budgets(index):
            self.reserved[owner] -= price
        return True


awards = st.tuples(
    st.just("award"),
    st.integers(0, len(SPECS) - 1),
    st.one_of(st.none(), st.decimals("0.00", "90.00", places=2)),
)
releases = st.tuples(st.just("release"), st.integers(0, 40), st.none())
charges = st.tuples(st.just("charge"), st.integers(0, 1), st.decimals("-50.00", "120.00", places=2))
new_days = st.tuples(st.just("next_day"), st.just(0), st.none())
steps = st.lists(st.one_of(awards, awards, releases, charges, new_days), max_size=30)


@pytest.fixture
def world(db: None) -> tuple[list[Product], list[Partner], LeadBuilder]:
    partners = [PartnerFactory(monthly_budget=budget) for budget in PARTNER_BUDGETS]
    products = []
    for spec in SPECS:
        product = ProductFactory(
            partner=partners[spec.partner],
            daily_cap=spec.daily,
            monthly_cap=spec.monthly,
            monthly_budget=spec.product_budget,
        )
        fee_cards.set_fee_card(
            product_id=product.id,
            currency=spec.currency,
            cpl=spec.cpl,
            cpa=Decimal("250.00"),
            cpf_rate=Decimal("0.0300"),
            cpf_min=Decimal("50.00"),
            cpf_max=None,
            to_platform=spec.rate if spec.currency != "CNY" else Decimal(1),
        )
        products.append(product)
    builder = LeadBuilder()
    # Its shared source, subject and grant made now, outside the examples' rollbacks.
    builder.lead(product=products[1])
    return products, partners, builder


def counters() -> dict[tuple[str, uuid.UUID, str, object], Decimal]:
    return {
        (scope, owner, kind, period): used
        for scope, owner, kind, period, used in CapCounter.objects.filter(
            is_sandbox=False
        ).values_list("scope", "owner_id", "kind", "period", "used")
    }


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(steps=steps)
def test_counters_follow_the_model_of_the_caps(
    world: tuple[list[Product], list[Partner], LeadBuilder],
    steps: list[tuple[str, int, Decimal | None]],
) -> None:
    products, partners, builder = world
    # Mid-month, mid-day: the new days the steps make stay in one month.
    start = timezone.now().replace(day=10, hour=12, minute=0, second=0, microsecond=0)
    with transaction.atomic():
        model = Model()
        leads: list[Lead] = []
        for step, number, amount in steps:
            now = start + timedelta(days=model.day)
            if step == "award":
                spec, product = SPECS[number], products[number]
                bid = amount
                lead = builder.lead(product=product)
                Lead.objects.filter(pk=lead.pk).update(status=LeadStatus.MATCHED)
                claim = caps.Claim(
                    lead.id,
                    product.id,
                    product.partner_id,
                    spec.daily,
                    spec.monthly,
                    bid=bid,
                    bid_currency="CNY" if bid is not None else "",
                )
                refused = caps.reserve([claim], is_sandbox=False, now=now)
                expected = model.award(number, price_in_cny(spec, bid))
                assert (not refused) == expected, (step, number, amount, model)
                assert refused in (set(), {product.id})
                if refused:
                    lead.delete()
                else:
                    leads.append(lead)
            elif step == "release" and leads:
                which = number % len(leads)
                Lead.objects.filter(pk=leads[which].pk).update(status=LeadStatus.POST_REJECTED)
                assert caps.release(lead_id=leads[which].id) == model.release(which)
            elif step == "charge":
                # What billing writes after a charge beyond the reservations.
                owner = ("partner", number)
                total = model.charged.get(owner, Decimal(0)) + (amount or Decimal(0))
                model.charged[owner] = total
                CapCounter.objects.update_or_create(
                    scope=CapScope.PARTNER,
                    owner_id=partners[number].id,
                    kind=CapKind.CHARGED,
                    period=month_of(now),
                    is_sandbox=False,
                    defaults={"used": total},
                )
            elif step == "next_day" and model.day < 15:  # within the month
                model.day += 1
            now = start + timedelta(days=model.day)
            _check(model, products, partners, now)
        transaction.set_rollback(True)


def _check(model: Model, products: list[Product], partners: list[Partner], now: datetime) -> None:
    stored = counters()
    month = month_of(now)
    for index, product in enumerate(products):
        for day in range(model.day + 1):
            on = (now - timedelta(days=model.day - day)).date()
            want = model.used_day.get((index, day), 0)
            got = stored.get((CapScope.PRODUCT, product.id, CapKind.DAY, on), Decimal(0))
            assert got == want if SPECS[index].daily is not None else got == 0
        got = stored.get((CapScope.PRODUCT, product.id, CapKind.MONTH, month), Decimal(0))
        want = model.used_month.get(index, 0) if SPECS[index].monthly is not None else 0
        assert got == want
        got = stored.get((CapScope.PRODUCT, product.id, CapKind.RESERVED, month), Decimal(0))
        assert got == model.reserved.get(("product", index), Decimal(0))
    for index, partner in enumerate(partners):
        got = stored.get((CapScope.PARTNER, partner.id, CapKind.RESERVED, month), Decimal(0))
        assert got == model.reserved.get(("partner", index), Decimal(0))
    full = caps.at_cap(
        [(p.id, p.partner_id, SPECS[i].daily, SPECS[i].monthly) for i, p in enumerate(products)],
        is_sandbox=False,
        now=now,
    )
    assert full == {p.id for i, p in enumerate(products) if model.full(i)}
