"""Each hold's owner lifts only its own: the credit limit, a monthly budget and ops each
hold routing with a reason of their own (partners.holds), side by side, and lifting one
never lifts another. (One shared text field held one reason: the last writer's.)"""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from billing import budgets, credit
from billing.models import PartnerBillingProfile
from billing.tasks import sweep_budgets
from marketplace.matching import product_index
from partners.models import HoldReason, Partner, Product
from tests.billing.builders import LeadBuilder, post, report, schedule
from tests.factories import PartnerFactory, ProductFactory
from tests.holds import held_for, pause_in_admin, resume_in_admin, save_in_admin

pytestmark = pytest.mark.django_db

NEXT_CENTURY = date(2999, 1, 1)


@pytest.fixture
def product(db: None) -> Product:
    partner = PartnerFactory()
    schedule(partner)  # CPL 40: an accepted lead costs 42.40 with VAT
    return ProductFactory(partner=partner)


def accept(leads: LeadBuilder, product: Product) -> None:
    post(leads.lead(product=product), report("accepted", timezone.now() - timedelta(seconds=30)))


def routable(product: Product) -> bool:
    return product.id in {box.product_id for box in product_index.boxes()}


def over_budget_and_credit_limit(leads: LeadBuilder, product: Product) -> Partner:
    partner = product.partner
    Partner.objects.filter(pk=partner.pk).update(monthly_budget=Decimal("40.00"))
    PartnerBillingProfile.objects.create(partner=partner, credit_limit=Decimal("10.00"))
    accept(leads, product)
    assert held_for(partner) == {HoldReason.BUDGET, HoldReason.CREDIT_LIMIT}
    return partner


def test_a_new_month_lifts_the_budget_hold_but_not_the_credit_limits(
    leads: LeadBuilder, product: Product, monkeypatch: pytest.MonkeyPatch
) -> None:
    partner = over_budget_and_credit_limit(leads, product)

    monkeypatch.setattr(budgets, "current_month", lambda: NEXT_CENTURY)
    sweep_budgets()

    assert held_for(partner) == {HoldReason.CREDIT_LIMIT}
    assert not routable(product)


def test_the_credit_limit_lifts_its_hold_but_not_the_budgets(
    leads: LeadBuilder, product: Product
) -> None:
    partner = over_budget_and_credit_limit(leads, product)

    PartnerBillingProfile.objects.filter(partner=partner).update(credit_limit=Decimal("1000.00"))
    assert credit.evaluate_credit_limit(partner_id=partner.pk) is False

    assert held_for(partner) == {HoldReason.BUDGET}
    assert not routable(product)


def test_ops_resume_lifts_neither_billing_hold(leads: LeadBuilder, product: Product) -> None:
    partner = over_budget_and_credit_limit(leads, product)
    pause_in_admin(partner, "Licence under review")
    assert held_for(partner) == {HoldReason.BUDGET, HoldReason.CREDIT_LIMIT, HoldReason.OPS_PAUSE}

    resume_in_admin(partner, "Licence checked")

    assert held_for(partner) == {HoldReason.BUDGET, HoldReason.CREDIT_LIMIT}
    assert not routable(product)


def test_billing_lifts_its_holds_but_not_an_ops_pause(
    leads: LeadBuilder, product: Product, monkeypatch: pytest.MonkeyPatch
) -> None:
    partner = product.partner
    pause_in_admin(partner, "Licence under review")
    Partner.objects.filter(pk=partner.pk).update(monthly_budget=Decimal("40.00"))
    PartnerBillingProfile.objects.create(partner=partner, credit_limit=Decimal("10.00"))
    accept(leads, product)
    assert held_for(partner) == {HoldReason.BUDGET, HoldReason.CREDIT_LIMIT, HoldReason.OPS_PAUSE}

    monkeypatch.setattr(budgets, "current_month", lambda: NEXT_CENTURY)
    PartnerBillingProfile.objects.filter(partner=partner).update(credit_limit=Decimal("1000.00"))
    sweep_budgets()  # lifts the budget's hold, and re-checks the credit limit: within it

    assert held_for(partner) == {HoldReason.OPS_PAUSE}
    assert not routable(product)
    resume_in_admin(partner, "Licence checked")
    assert held_for(partner) == set()
    assert routable(product)


def test_a_product_budget_hold_and_an_ops_pause_of_the_product_are_apart(
    leads: LeadBuilder, product: Product, monkeypatch: pytest.MonkeyPatch
) -> None:
    Product.objects.filter(pk=product.pk).update(monthly_budget=Decimal("40.00"))
    save_in_admin(product, ops_hold=True, ops_hold_note="Wrong APR published")
    accept(leads, product)
    assert held_for(product) == {HoldReason.BUDGET, HoldReason.OPS_PAUSE}
    assert held_for(product.partner) == set()  # the partner's other products still route

    save_in_admin(product, ops_hold=None)
    assert held_for(product) == {HoldReason.BUDGET}
    save_in_admin(product, ops_hold=True, ops_hold_note="Wrong APR published")
    monkeypatch.setattr(budgets, "current_month", lambda: NEXT_CENTURY)
    sweep_budgets()
    assert held_for(product) == {HoldReason.OPS_PAUSE}
