from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from django.db import connection
from rest_framework.test import APIClient

from demo.lenders import SimulatedLender
from demo.server import PartnerSimulator
from marketplace.celery import app as celery_app
from partners import catalogue_triggers
from partners.keys import issue_api_key
from partners.models import KeyMode, Partner, Product, TrafficSource
from partners.webhook_signing import create_endpoint
from tests.factories import (
    FeeScheduleFactory,
    PartnerFactory,
    ProductFactory,
    TrafficSourceFactory,
    published_consent_text,
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    from django.conf import settings

    if settings.DATABASES["default"]["ENGINE"].endswith("postgresql"):
        return
    skip = pytest.mark.skip(reason="needs PostgreSQL (set DATABASE_URL=postgres://...)")
    for item in items:
        if "postgres" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _catalogue_version_at_once(request: pytest.FixtureRequest) -> None:
    """On PostgreSQL the catalogue version's triggers run at commit (partners migration
    0007); a test's transaction never commits, so inside it they run at once, and routing
    sees the products the test just made. (Tests that commit, ``transaction=True``, keep
    the deferred triggers and the incremental product index.)"""
    uses_db = "_django_db_helper" in request.fixturenames or request.node.get_closest_marker(
        "django_db"
    )
    if not uses_db or connection.vendor != "postgresql":
        return
    request.getfixturevalue("_django_db_helper")  # the test's transaction, if it has one
    if connection.in_atomic_block:
        with connection.cursor() as cursor:
            cursor.execute(f"SET CONSTRAINTS {CATALOGUE_TRIGGERS} IMMEDIATE")
        # Changes seen at once and then rolled back: the product index must read the whole
        # catalogue when the version moves (as on SQLite), not revise itself from changes
        # that will vanish.
        request.getfixturevalue("settings").PRODUCT_INDEX_INCREMENTAL = False


CATALOGUE_TRIGGERS = ", ".join(catalogue_triggers.trigger_names())


@pytest.fixture(autouse=True)
def _celery_eager() -> Iterator[None]:
    """Tasks run in-process unless a test asks for a real worker (marker real_worker)."""
    previous = celery_app.conf.task_always_eager
    celery_app.conf.task_always_eager = True
    yield
    celery_app.conf.task_always_eager = previous


@pytest.fixture
def source(db: None) -> TrafficSource:
    return TrafficSourceFactory()


@pytest.fixture
def consent_text(db: None) -> object:
    return published_consent_text()


@pytest.fixture
def partner(db: None) -> Partner:
    """A live partner with no products yet. The apps' conftests give it what their tests
    need (a product in marketplace and partners, a fee schedule in billing)."""
    return PartnerFactory()


@pytest.fixture
def source_client(source: TrafficSource, consent_text: object) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {issue_api_key(source=source).plaintext}")
    client.source = source  # type: ignore[attr-defined]
    return client


def partner_client(partner: Partner, mode: str = KeyMode.LIVE) -> APIClient:
    client = APIClient()
    key = issue_api_key(partner=partner, mode=mode).plaintext
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    client.partner = partner  # type: ignore[attr-defined]
    client.key = key  # type: ignore[attr-defined]
    return client


@dataclass
class SimulatedPartner:
    partner: Partner
    product: Product
    lender: SimulatedLender
    api_key: str
    simulator: PartnerSimulator


@pytest.fixture
def simulator_factory(db: None) -> Iterator[object]:
    """Start a real partner simulator on loopback for partners created by the test."""
    started: list[PartnerSimulator] = []

    def make(api_base_url: str | None = None, **behaviour: object) -> SimulatedPartner:
        partner = PartnerFactory()
        api_key = issue_api_key(partner=partner).plaintext
        _, secret = create_endpoint(partner=partner, url="http://127.0.0.1:9/webhooks")
        lender = SimulatedLender(
            slug=partner.slug, secret=secret, api_key=api_key if api_base_url else None, **behaviour
        )
        simulator = PartnerSimulator([lender], api_base_url=api_base_url).start()
        started.append(simulator)
        product = ProductFactory(partner=partner, post_url=simulator.url_for(partner.slug, "post"))
        partner.webhooks.update(url=simulator.url_for(partner.slug, "webhooks"))
        FeeScheduleFactory(partner=partner)
        return SimulatedPartner(partner, product, lender, api_key, simulator)

    yield make
    for simulator in started:
        simulator.stop()


def is_postgres() -> bool:
    return connection.vendor == "postgresql"
