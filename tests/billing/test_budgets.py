"""Monthly budget caps (billing.budgets): a partner or product whose charges this month,
net of credits and reversals, reach its budget is held from routing until the next month
or a higher budget; other holds are never touched."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from billing import budgets, credit
from billing.tasks import sweep_budgets
from marketplace.matching import product_index
from marketplace.models import Lead
from partners.holds import active_holds, lift_hold, place_hold
from partners.models import HoldReason, Partner, Product
from tests.billing.builders import LeadBuilder, post, report, schedule
from tests.factories import PartnerFactory, ProductFactory
from tests.holds import held_for, save_in_admin

pytestmark = pytest.mark.django_db

CPL = Decimal("40.00")  # the default schedule's fee per accepted lead


def just_now() -> timezone.datetime:
    return timezone.now() - timedelta(seconds=30)


def accept(leads: LeadBuilder, product: Product, external_id: str | None = None) -> Lead:
    lead = leads.lead(product=product)
    post(lead, report("accepted", just_now(), external_id=external_id))
    return lead


def hold_of(row: Partner | Product) -> str:
    """The one reason ``row`` is held for, "" when none (several: the test says which)."""
    reasons = held_for(row)
    assert len(reasons) <= 1, reasons
    return reasons.pop() if reasons else ""


def ops_note(partner: Partner) -> str | None:
    """The note of the partner's ops pause in force, None without one."""
    hold = active_holds().filter(partner=partner, reason=HoldReason.OPS_PAUSE).first()
    return None if hold is None else hold.note


def routable_product_ids() -> set[object]:
    return {box.product_id for box in product_index.boxes()}


@pytest.fixture
def product(db: None) -> Product:
    partner = PartnerFactory()
    schedule(partner)
    return ProductFactory(partner=partner)


def test_reaching_the_partner_budget_holds_routing_and_no_product_is_matched(
    leads: LeadBuilder, product: Product
) -> None:
    partner = product.partner
    Partner.objects.filter(pk=partner.pk).update(monthly_budget=Decimal("80.00"))
    assert product.id in routable_product_ids()

    accept(leads, product)
    assert hold_of(partner) == ""

    accept(leads, product)  # 80 of 80: reached
    assert hold_of(partner) == budgets.HOLD_REASON
    assert product.id not in routable_product_ids()


def test_spend_is_net_of_reversals_and_a_credit_below_the_budget_releases(
    leads: LeadBuilder, product: Product
) -> None:
    partner = product.partner
    Partner.objects.filter(pk=partner.pk).update(monthly_budget=Decimal("80.00"))
    accept(leads, product)
    lead = accept(leads, product, external_id="acc-2")
    assert hold_of(partner) == budgets.HOLD_REASON

    post(lead, report("reversal", just_now(), reverses="acc-2"))

    total, _ = budgets.month_to_date(partner_id=partner.pk)
    assert total == CPL
    assert hold_of(partner) == ""


def test_the_next_month_releases_the_hold(
    leads: LeadBuilder, product: Product, monkeypatch: pytest.MonkeyPatch
) -> None:
    partner = product.partner
    Partner.objects.filter(pk=partner.pk).update(monthly_budget=Decimal("40.00"))
    accept(leads, product)
    assert hold_of(partner) == budgets.HOLD_REASON
    sweep_budgets()  # same month: still reached
    assert hold_of(partner) == budgets.HOLD_REASON

    this_month = budgets.current_month()
    next_month = (this_month + timedelta(days=32)).replace(day=1)
    monkeypatch.setattr(budgets, "current_month", lambda: next_month)
    assert sweep_budgets() == 1

    assert hold_of(partner) == ""
    assert product.id in routable_product_ids()


def test_raising_the_budget_releases_at_once(leads: LeadBuilder, product: Product) -> None:
    partner = product.partner
    Partner.objects.filter(pk=partner.pk).update(monthly_budget=Decimal("40.00"))
    accept(leads, product)
    assert hold_of(partner) == budgets.HOLD_REASON

    save_in_admin(partner, monthly_budget="1000.00")

    assert hold_of(partner) == ""


def test_lowering_the_budget_below_the_spend_holds_at_once(
    leads: LeadBuilder, product: Product
) -> None:
    accept(leads, product)
    partner = Partner.objects.get(pk=product.partner_id)
    save_in_admin(partner, monthly_budget="10.00")
    assert hold_of(partner) == budgets.HOLD_REASON


def test_a_product_budget_skips_only_that_product(leads: LeadBuilder, product: Product) -> None:
    capped = product
    other = ProductFactory(partner=capped.partner, name="Second product")
    Product.objects.filter(pk=capped.pk).update(monthly_budget=Decimal("40.00"))

    accept(leads, other)  # the other product's spend does not count against this budget
    assert hold_of(capped) == ""
    accept(leads, capped)

    assert hold_of(capped) == budgets.HOLD_REASON
    assert hold_of(other) == ""
    assert hold_of(capped.partner) == ""
    assert routable_product_ids() >= {other.id}
    assert capped.id not in routable_product_ids()
    _, per_product = budgets.month_to_date(
        partner_id=capped.partner_id, product_ids=[capped.id, other.id]
    )
    assert per_product == {capped.id: CPL, other.id: CPL}


def test_a_product_hold_is_released_by_a_higher_budget_and_by_the_next_month(
    leads: LeadBuilder, product: Product, monkeypatch: pytest.MonkeyPatch
) -> None:
    Product.objects.filter(pk=product.pk).update(monthly_budget=Decimal("40.00"))
    accept(leads, product)
    assert hold_of(product) == budgets.HOLD_REASON

    monkeypatch.setattr(budgets, "current_month", lambda: date(2999, 1, 1))
    sweep_budgets()
    assert hold_of(product) == ""

    monkeypatch.undo()
    sweep_budgets()
    assert hold_of(product) == budgets.HOLD_REASON
    save_in_admin(product, monthly_budget="100.00")
    assert hold_of(product) == ""


def test_another_hold_is_neither_overwritten_nor_released(
    leads: LeadBuilder, product: Product, monkeypatch: pytest.MonkeyPatch
) -> None:
    partner = product.partner
    Partner.objects.filter(pk=partner.pk).update(monthly_budget=Decimal("40.00"))
    place_hold(partner_id=partner.pk, reason=HoldReason.OPS_PAUSE, note="compliance review")
    accept(leads, product)
    assert ops_note(partner) == "compliance review"

    monkeypatch.setattr(budgets, "current_month", lambda: date(2999, 1, 1))
    sweep_budgets()
    assert ops_note(partner) == "compliance review"


def test_lifting_the_budget_hold_leaves_the_credit_limit_in_force(
    leads: LeadBuilder, product: Product, monkeypatch: pytest.MonkeyPatch
) -> None:
    from billing.models import PartnerBillingProfile

    partner = product.partner
    Partner.objects.filter(pk=partner.pk).update(monthly_budget=Decimal("40.00"))
    accept(leads, product)  # budget reached first: held for the budget
    assert hold_of(partner) == budgets.HOLD_REASON
    PartnerBillingProfile.objects.update_or_create(
        partner=partner, defaults={"credit_limit": Decimal("10.00")}
    )

    monkeypatch.setattr(budgets, "current_month", lambda: date(2999, 1, 1))
    sweep_budgets()

    assert hold_of(partner) == credit.HOLD_REASON


def test_release_with_a_reason_only_lifts_that_hold(product: Product) -> None:
    partner = product.partner
    place_hold(partner_id=partner.pk, reason=HoldReason.OPS_PAUSE, note="compliance review")
    assert lift_hold(partner_id=partner.pk, reason=budgets.HOLD_REASON) is False
    assert ops_note(partner) == "compliance review"
    assert lift_hold(partner_id=partner.pk, reason=HoldReason.OPS_PAUSE) is True
    assert hold_of(partner) == ""


def test_no_budget_means_no_aggregate(
    leads: LeadBuilder, product: Product, monkeypatch: pytest.MonkeyPatch
) -> None:
    lead = leads.lead(product=product)
    calls: list[object] = []
    monkeypatch.setattr(budgets, "month_to_date", lambda **kwargs: calls.append(kwargs))

    post(lead, report("accepted", just_now()))

    assert calls == []
    assert lead.charges.exists()
