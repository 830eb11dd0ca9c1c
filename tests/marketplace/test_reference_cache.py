"""Routing caches its reference data per catalogue version (partners.catalogue_cache): every
table it caches must move the version when it changes, or a process would route by stale
rules, licences or strategies until the next product change."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.utils import timezone

from marketplace.matching import product_index
from marketplace.regulation import publish_rule_set, rules_at
from partners import catalogue_cache, catalogue_triggers
from partners.models import CatalogueVersion
from partners.registry import every_licence_period
from tests.factories import PartnerFactory

pytestmark = pytest.mark.django_db


def version() -> int | None:
    return product_index.current()[1]


def installed_triggers() -> set[str]:
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SELECT tgname FROM pg_trigger WHERE NOT tgisinternal")
        else:
            cursor.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'")
        return {name for (name,) in cursor.fetchall()}


@pytest.mark.parametrize("table", catalogue_triggers.VERSION_ONLY)
def test_every_cached_table_has_a_trigger_moving_the_version(table: str) -> None:
    names = installed_triggers()
    if connection.vendor == "postgresql":
        assert catalogue_triggers.postgresql_trigger_name(table) in names
    else:
        assert {f"{table}_catalogue_version_{e}" for e in ("insert", "update", "delete")} <= names


def test_a_new_rule_set_is_applied_from_the_next_referral() -> None:
    CatalogueVersion.objects.get_or_create(id=1)
    now = timezone.now()
    before = version()
    assert rules_at(now, version=before).all_in_cost_cap == Decimal("0.24")  # cached

    publish_rule_set(
        effective_from=now - timedelta(seconds=1),
        all_in_cost_cap=Decimal("0.2000"),
        min_age=20,
        max_age=60,
        excluded_regions=["CN-XZ"],
        note="tighter cap",
        created_by=None,
    )

    after = version()
    assert after != before
    rules = rules_at(now, version=after)
    assert (rules.all_in_cost_cap, rules.min_age, rules.excluded_regions) == (
        Decimal("0.2000"),
        20,
        frozenset({"CN-XZ"}),
    )


def test_a_renewed_licence_moves_the_version_and_is_read_again() -> None:
    CatalogueVersion.objects.get_or_create(id=1)
    partner = PartnerFactory()
    before = version()
    cached = catalogue_cache.cached("licences", version=before, compute=every_licence_period)
    old_expiry = cached[partner.id][1]

    partner.licence.expires_on = old_expiry + timedelta(days=365)
    partner.licence.save()

    after = version()
    assert after != before
    fresh = catalogue_cache.cached("licences", version=after, compute=every_licence_period)
    assert fresh[partner.id][1] == old_expiry + timedelta(days=365)


def test_without_a_version_nothing_is_kept() -> None:
    calls = []

    def compute() -> int:
        calls.append(1)
        return len(calls)

    assert catalogue_cache.cached("probe", version=None, compute=compute) == 1
    assert catalogue_cache.cached("probe", version=None, compute=compute) == 2
    assert catalogue_cache.cached("probe", version=7, compute=compute) == 3
    assert catalogue_cache.cached("probe", version=7, compute=compute) == 3
