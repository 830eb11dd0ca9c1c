"""The admin shows auctions with their pings (read-only) and leads with their bid."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse
from rest_framework.test import APIClient

from marketplace.models import Auction, Lead
from partners.models import DeliveryMode
from tests.conftest import SimulatedPartner
from tests.factories import referral_payload
from tests.marketplace.conftest import api_post, pii_strings

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff_client() -> Client:
    user = get_user_model().objects.create_superuser("ops", "ops@example.invalid", "pw-123456!")
    client = Client()
    client.force_login(user)
    return client


def test_auction_page_lists_its_pings_and_the_lead_list_shows_bids(
    staff_client: Client,
    source_client: APIClient,
    simulator_factory: Callable[..., SimulatedPartner],
    django_capture_on_commit_callbacks: Any,
    settings: Any,
) -> None:
    settings.AUCTION_BUDGET_MS = 1500
    for bid, rejecting in (("41.00", False), ("12.00", True)):
        sim = simulator_factory(
            bid_min=Decimal(bid), bid_max=Decimal(bid), ping_reject_rate=float(rejecting)
        )
        sim.product.delivery_mode = DeliveryMode.PING_POST
        sim.product.ping_url = sim.simulator.url_for(sim.partner.slug, "ping")
        sim.product.save()
    payload = referral_payload()
    with django_capture_on_commit_callbacks(execute=True):
        assert api_post(source_client, payload).status_code == 201
    auction = Auction.objects.get()

    listing = staff_client.get(reverse("admin:marketplace_auction_changelist"))
    detail = staff_client.get(reverse("admin:marketplace_auction_change", args=[auction.pk]))
    leads = staff_client.get(reverse("admin:marketplace_lead_changelist"))
    add = staff_client.get(reverse("admin:marketplace_auction_add"))

    assert (listing.status_code, detail.status_code, leads.status_code) == (200, 200, 200)
    assert add.status_code == 403  # auctions are facts: nothing to add or edit
    html = detail.content.decode()
    assert "41.00" in html and "Won: the lead is posted" in html
    assert html.count("Failure (partner said no)") == 1
    assert '<input type="text"' not in html  # the pings are read-only
    assert "41.00" in leads.content.decode()
    assert Lead.objects.get().bid_amount == Decimal("41.00")
    for page in (listing, detail, leads):
        for value in pii_strings(payload):
            assert value not in page.content.decode()
