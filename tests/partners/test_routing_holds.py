"""Routing holds as rows (partners.holds): one per reason, placed and lifted idempotently by
their owner only; ops pause and resume in the admin with a reason; partners read their holds
(reason and since, never ops' note) through the API; the old text field's values became
rows."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from partners.holds import active_holds, is_held, lift_hold, place_hold
from partners.models import HoldReason, Partner, RoutingHold
from tests.conftest import partner_client
from tests.factories import PartnerFactory, ProductFactory
from tests.holds import held_for, pause_in_admin, post_admin_form, save_in_admin

pytestmark = pytest.mark.django_db


def test_placing_and_lifting_are_idempotent_and_touch_only_their_reason(partner: Partner) -> None:
    assert place_hold(partner_id=partner.pk, reason=HoldReason.CREDIT_LIMIT) is True
    assert place_hold(partner_id=partner.pk, reason=HoldReason.CREDIT_LIMIT) is False
    assert place_hold(partner_id=partner.pk, reason=HoldReason.BUDGET) is True

    assert lift_hold(partner_id=partner.pk, reason=HoldReason.OPS_PAUSE) is False
    assert lift_hold(partner_id=partner.pk, reason=HoldReason.BUDGET) is True
    assert lift_hold(partner_id=partner.pk, reason=HoldReason.BUDGET) is False

    assert held_for(partner) == {HoldReason.CREDIT_LIMIT}
    assert is_held(partner_id=partner.pk, reason=HoldReason.CREDIT_LIMIT)
    assert not is_held(partner_id=partner.pk, reason=HoldReason.BUDGET)
    # The lifted hold stays as history.
    assert RoutingHold.objects.filter(partner=partner, lifted_at__isnull=False).count() == 1


def test_a_product_hold_is_the_products_alone(partner: Partner) -> None:
    product = partner.products.get()
    place_hold(partner_id=partner.pk, product_id=product.pk, reason=HoldReason.BUDGET)

    assert held_for(product) == {HoldReason.BUDGET}
    assert held_for(partner) == set()
    with pytest.raises(Exception, match="not the partner's"):
        place_hold(
            partner_id=PartnerFactory().pk, product_id=product.pk, reason=HoldReason.OPS_PAUSE
        )


def test_ops_pause_of_a_product_in_the_admin_needs_a_reason_and_keeps_it(
    partner: Partner,
) -> None:
    product = partner.products.get()
    refused = post_admin_form(product, ops_hold=True, ops_hold_note="")
    assert refused.status_code == 200
    assert refused.context["adminform"].form.errors == {
        "ops_hold_note": ["Say why routing is paused."]
    }
    assert held_for(product) == set()

    save_in_admin(product, ops_hold=True, ops_hold_note="Licence under review")

    (hold,) = active_holds().filter(product=product)
    assert (hold.reason, hold.note, hold.created_by.is_superuser) == (
        HoldReason.OPS_PAUSE,
        "Licence under review",
        True,
    )


def test_the_partner_form_has_no_pause_box_only_the_reasoned_pages(
    partner: Partner, admin_client: Any
) -> None:
    """A partner is paused only through its pause page (a reason, who, when): its form
    shows the holds in force read-only, and a pause box posted anyway changes nothing."""
    place_hold(partner_id=partner.pk, reason=HoldReason.OPS_PAUSE, note="Endpoint down")
    url = f"/admin/partners/partner/{partner.pk}/change/"
    page = admin_client.get(url).content.decode()
    assert 'name="ops_hold"' not in page and 'name="ops_hold_note"' not in page
    assert "Paused by ops (all products)" in page  # read-only: the holds in force
    assert f"/admin/partners/partner/{partner.pk}/resume/" in page

    lift_hold(partner_id=partner.pk, reason=HoldReason.OPS_PAUSE)
    save_in_admin(partner, ops_hold="on", ops_hold_note="ticked on an old form")
    assert held_for(partner) == set()

    pause_in_admin(partner, "Licence under review")
    (hold,) = active_holds().filter(partner=partner, product__isnull=True)
    assert (hold.reason, hold.note) == (HoldReason.OPS_PAUSE, "Licence under review")


def test_the_admin_lists_holds_in_force(partner: Partner, admin_client: Any) -> None:
    place_hold(partner_id=partner.pk, reason=HoldReason.CREDIT_LIMIT)
    product = partner.products.get()
    place_hold(partner_id=partner.pk, product_id=product.pk, reason=HoldReason.BUDGET)

    listing = admin_client.get("/admin/partners/partner/").content.decode()
    page = admin_client.get(f"/admin/partners/partner/{partner.pk}/change/").content.decode()

    assert "Over credit limit" in listing
    assert "Over credit limit (all products)" in page
    assert f"Monthly budget reached ({product.name})" in page


def test_me_lists_the_partners_holds_without_ops_notes(partner: Partner) -> None:
    place_hold(partner_id=partner.pk, reason=HoldReason.OPS_PAUSE, note="Licence under review")
    place_hold(partner_id=partner.pk, reason=HoldReason.BUDGET)
    product = partner.products.get()
    place_hold(partner_id=partner.pk, product_id=product.pk, reason=HoldReason.BUDGET)
    client = partner_client(partner)

    me = client.get("/api/v1/partner/me")
    products = client.get("/api/v1/partner/products").json()["results"]

    assert [hold["reason"] for hold in me.json()["holds"]] == ["ops_pause", "budget"]
    assert all(set(hold) == {"reason", "since"} for hold in me.json()["holds"])
    assert "Licence under review" not in me.content.decode()
    assert [hold["reason"] for hold in products[0]["holds"]] == ["budget"]


# --- The data migration --------------------------------------------------------------------

BEFORE = ("partners", "0005_budgets_shared_limits")


def _migrate(targets: list[tuple[str, str]] | None = None) -> Any:
    executor = MigrationExecutor(connection)
    executor.migrate(targets or executor.loader.graph.leaf_nodes())
    executor.loader.build_graph()
    return executor.loader.project_state(targets[0]).apps if targets else None


@pytest.mark.django_db(transaction=True)
def test_the_old_hold_texts_become_rows_of_their_reasons() -> None:
    credit, budget, ops, free = (PartnerFactory() for _ in range(4))
    product = ProductFactory(partner=free)
    try:
        old = _migrate([BEFORE])
        partners, products = (
            old.get_model("partners", "Partner"),
            old.get_model("partners", "Product"),
        )
        for partner, text in [
            (credit, "over credit limit"),
            (budget, "monthly budget reached"),
            (ops, "compliance review"),
        ]:
            partners.objects.filter(pk=partner.pk).update(routing_hold=text)
        products.objects.filter(pk=product.pk).update(routing_hold="monthly budget reached")
    finally:
        _migrate()

    rows = {(hold.partner_id, hold.product_id): (hold.reason, hold.note) for hold in active_holds()}
    assert rows == {
        (credit.pk, None): (HoldReason.CREDIT_LIMIT, ""),
        (budget.pk, None): (HoldReason.BUDGET, ""),
        (ops.pk, None): (HoldReason.OPS_PAUSE, "compliance review"),
        (free.pk, product.pk): (HoldReason.BUDGET, ""),
    }
