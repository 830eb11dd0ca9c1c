"""The product index revises itself from the catalogue's change log (partners.CatalogueChange)
instead of reading every product again, and stays equal to a full read of the catalogue
through any sequence of committed changes: products added, changed, deactivated, deleted,
partners paused, routing holds placed and lifted, and changes rolled back.

These tests commit (``transaction=True``): the change log is written at commit on PostgreSQL.
"""

from __future__ import annotations

import random
from datetime import timedelta
from decimal import Decimal

import pytest
from django.core.management import call_command
from django.db import connection, transaction
from django.test import override_settings

from marketplace.matching import ProductIndex, box_from_product
from partners import catalogue_triggers, holds
from partners.models import (
    CatalogueChange,
    CatalogueVersion,
    HoldReason,
    Partner,
    PartnerStatus,
    Product,
    RoutingHold,
)
from tests.factories import PartnerFactory, ProductFactory

pytestmark = pytest.mark.django_db(transaction=True)


def full_read() -> dict[object, object]:
    """The reference: every routable product's box, read from scratch."""
    reference = ProductIndex()
    with override_settings(PRODUCT_INDEX_INCREMENTAL=False):
        return {box.product_id: box for box in reference.boxes()}


def as_dict(index: ProductIndex) -> dict[object, object]:
    return {box.product_id: box for box in index.boxes()}


@pytest.fixture
def index() -> ProductIndex:
    CatalogueVersion.objects.get_or_create(id=1)  # a flushed database has none
    with override_settings(PRODUCT_INDEX_INCREMENTAL=True):
        yield ProductIndex()


def test_a_change_to_one_product_revises_the_index_without_reading_the_catalogue(
    index: ProductIndex,
) -> None:
    products = [ProductFactory(partner=PartnerFactory()) for _ in range(3)]
    assert set(as_dict(index)) == {p.id for p in products}
    assert (index.full_reads, index.revisions) == (1, 0)

    Product.objects.filter(pk=products[0].pk).update(apr_min=Decimal("0.1000"))

    boxes = as_dict(index)
    assert boxes[products[0].id].apr_min == Decimal("0.1000")
    assert (index.full_reads, index.revisions) == (1, 1)
    assert boxes == full_read()


def test_the_change_log_names_the_partner_and_product_each_change_touched(
    index: ProductIndex,
) -> None:
    partner = PartnerFactory()
    product = ProductFactory(partner=partner)
    CatalogueChange.objects.all().delete()

    Partner.objects.filter(pk=partner.pk).update(name="Renamed Lender")
    Product.objects.filter(pk=product.pk).update(max_amount=Decimal("9000.00"))
    holds.place_hold(partner_id=partner.id, product_id=product.id, reason=HoldReason.OPS_PAUSE)

    changes = set(CatalogueChange.objects.values_list("partner_id", "product_id"))
    assert changes == {(partner.id, None), (partner.id, product.id)}


def test_random_committed_changes_keep_the_index_equal_to_a_full_read(
    index: ProductIndex,
) -> None:
    rng = random.Random(7)
    partners = [PartnerFactory() for _ in range(4)]
    for partner in partners:
        for _ in range(3):
            ProductFactory(partner=partner)
    assert as_dict(index) == full_read()

    def some_product() -> Product:
        return rng.choice(list(Product.objects.all()))

    steps = {
        "add": lambda: ProductFactory(partner=rng.choice(partners)),
        "change": lambda: Product.objects.filter(pk=some_product().pk).update(
            min_amount=Decimal(rng.randint(500, 5000))
        ),
        "deactivate": lambda: Product.objects.filter(pk=some_product().pk).update(
            is_active=rng.random() < 0.5
        ),
        "delete": lambda: _delete_one(rng),
        "pause": lambda: Partner.objects.filter(pk=rng.choice(partners).pk).update(
            status=rng.choice([PartnerStatus.LIVE, PartnerStatus.PAUSED])
        ),
        "hold": lambda: holds.place_hold(
            partner_id=(p := some_product()).partner_id,
            product_id=p.id,
            reason=HoldReason.BUDGET,
        ),
        "lift": lambda: holds.lift_hold(
            partner_id=(p := some_product()).partner_id,
            product_id=p.id,
            reason=HoldReason.BUDGET,
        ),
        "rolled back": lambda: _rolled_back(some_product()),
    }
    for _ in range(40):
        name = rng.choice(sorted(steps))
        steps[name]()

        assert as_dict(index) == full_read(), f"after {name}"
    assert index.full_reads == 1
    assert index.revisions > 0


def _delete_one(rng: random.Random) -> None:
    """A product nothing points at (a hold's row protects its product)."""
    held = RoutingHold.objects.filter(product__isnull=False).values("product_id")
    free = list(Product.objects.exclude(pk__in=held))
    if len(free) > 3:
        rng.choice(free).delete()


def _rolled_back(product: Product) -> None:
    try:
        with transaction.atomic():
            Product.objects.filter(pk=product.pk).update(dedupe_days=99, is_active=False)
            raise RuntimeError("rolled back")
    except RuntimeError:
        pass


def test_an_index_that_has_not_looked_for_long_reads_the_whole_catalogue(
    index: ProductIndex,
) -> None:
    product = ProductFactory(partner=PartnerFactory())
    as_dict(index)
    assert index._looked_at is not None
    index._looked_at -= ProductIndex.STALE_AFTER + timedelta(seconds=1)

    Product.objects.filter(pk=product.pk).update(apr_min=Decimal("0.1100"))

    assert as_dict(index)[product.id].apr_min == Decimal("0.1100")
    assert index.full_reads == 2


def test_a_burst_of_changes_reads_the_whole_catalogue(index: ProductIndex) -> None:
    partner = PartnerFactory()
    as_dict(index)
    for _ in range(5):
        ProductFactory(partner=partner)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(ProductIndex, "MAX_CHANGES", 3)
        boxes = as_dict(index)

    assert boxes == full_read()
    assert (index.full_reads, index.revisions) == (2, 0)


def test_the_boxes_are_those_of_the_products_as_stored(index: ProductIndex) -> None:
    product = ProductFactory(partner=PartnerFactory())
    as_dict(index)
    Product.objects.filter(pk=product.pk).update(max_term_months=36)

    stored = Product.objects.select_related("partner").get(pk=product.pk)
    assert as_dict(index)[product.id] == box_from_product(stored)


def test_sqlite_gets_its_catalogue_triggers_back_after_a_migration_rebuilt_a_table() -> None:
    """SQLite drops a table's triggers when a migration rebuilds it (adding a column with a
    default does): post_migrate installs them again."""
    if connection.vendor != "sqlite":
        pytest.skip("PostgreSQL keeps triggers through ALTER TABLE")
    with connection.cursor() as cursor:
        cursor.execute("DROP TRIGGER partners_partner_catalogue_version_update")

    call_command("migrate", verbosity=0)  # nothing to apply; post_migrate still runs

    with connection.cursor() as cursor:
        cursor.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'")
        names = {name for (name,) in cursor.fetchall()}
    assert {
        f"{table}_catalogue_version_{event}"
        for table in catalogue_triggers.WATCHED
        for event in ("insert", "update", "delete")
    } <= names
    partner = PartnerFactory()
    CatalogueChange.objects.all().delete()
    Partner.objects.filter(pk=partner.pk).update(name="Renamed again")
    assert list(CatalogueChange.objects.values_list("partner_id", flat=True)) == [partner.id]
