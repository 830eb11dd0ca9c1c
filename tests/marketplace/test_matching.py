"""Matching (pure: credit boxes against an application) and routing (which partners get a
lead: consent scope, dedupe windows, caps, exclusivity, consumer order)."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.utils import timezone
from pytest_django.fixtures import Settings as SettingsWrapper
from rest_framework.test import APIClient

from marketplace.matching import Application, CreditBox, fits, match
from marketplace.models import Lead, LeadStatus, Referral, ReferralStatus
from marketplace.models.caps import CapCounter, CapReservation
from partners.models import DeliveryMode, PartnerStatus, Product
from tests.factories import PartnerFactory, ProductFactory, referral_payload

APR_CAP = Decimal("0.24")


def make_box(**overrides: Any) -> CreditBox:
    fields: dict[str, Any] = {
        "product_id": uuid.uuid4(),
        "partner_id": uuid.uuid4(),
        "min_amount": Decimal("1000.00"),
        "max_amount": Decimal("50000.00"),
        "min_term": 3,
        "max_term": 24,
        "tiers": frozenset({"R4", "R5"}),
        "regions": frozenset(),
        "excluded_regions": frozenset(),
        "min_age": 20,
        "max_age": 55,
        "min_income": Decimal("3000.00"),
        "employment_types": frozenset(),
        "purposes": frozenset(),
        "channels": frozenset(),
        "apr_min": Decimal("0.1500"),
        "apr_max": Decimal("0.2200"),
        "delivery_mode": DeliveryMode.DIRECT_POST,
        "exclusive": False,
        "dedupe_days": 30,
        "daily_cap": None,
        "monthly_cap": None,
        "partner_sandbox": False,
    }
    fields.update(overrides)
    return CreditBox(**fields)


def make_app(**overrides: Any) -> Application:
    fields: dict[str, Any] = {
        "amount": Decimal("8000.00"),
        "term_months": 12,
        "risk_tier": "R5",
        "region": "CN-GD",
        "age": 36,
        "income_floor": Decimal("5000"),
        "employment_type": "employed",
        "purpose": "consumption",
        "channel": "app",
    }
    fields.update(overrides)
    return Application(**fields)


# --- Pure matching ----------------------------------------------------------------------------


def test_default_box_fits_default_application() -> None:
    """The baseline every criterion test below changes one thing of."""
    assert fits(make_box(), make_app(), apr_cap=APR_CAP)


# (box overrides, application overrides, fits?)
CRITERIA = [
    # Amount, inclusive at both ends.
    ({}, {"amount": Decimal("1000.00")}, True),
    ({}, {"amount": Decimal("50000.00")}, True),
    ({}, {"amount": Decimal("999.99")}, False),
    ({}, {"amount": Decimal("50000.01")}, False),
    # Term, inclusive.
    ({}, {"term_months": 3}, True),
    ({}, {"term_months": 24}, True),
    ({}, {"term_months": 2}, False),
    ({}, {"term_months": 25}, False),
    # Risk tier.
    ({}, {"risk_tier": "R4"}, True),
    ({}, {"risk_tier": "R6"}, False),
    ({"tiers": frozenset()}, {}, False),
    # Regions: an empty allowed list is everywhere; exclusions always win.
    ({"regions": frozenset({"CN-GD", "CN-SH"})}, {}, True),
    ({"regions": frozenset({"CN-SH"})}, {}, False),
    ({"excluded_regions": frozenset({"CN-GD"})}, {}, False),
    ({"excluded_regions": frozenset({"CN-XZ"})}, {}, True),
    ({"regions": frozenset({"CN-GD"}), "excluded_regions": frozenset({"CN-GD"})}, {}, False),
    # Age, inclusive.
    ({}, {"age": 20}, True),
    ({}, {"age": 55}, True),
    ({}, {"age": 19}, False),
    ({}, {"age": 56}, False),
    # Income floor: the applicant's band floor must reach the product's minimum.
    ({}, {"income_floor": Decimal("3000")}, True),
    ({}, {"income_floor": Decimal("0")}, False),
    ({"min_income": Decimal("5000.01")}, {}, False),
    # Employment type, purpose, channel: empty means any.
    ({"employment_types": frozenset({"employed", "civil_servant"})}, {}, True),
    ({"employment_types": frozenset({"civil_servant"})}, {}, False),
    ({"purposes": frozenset({"consumption"})}, {}, True),
    ({"purposes": frozenset({"education"})}, {}, False),
    ({"channels": frozenset({"app", "web"})}, {}, True),
    ({"channels": frozenset({"call_center"})}, {}, False),
    # APR cap: a product whose cheapest APR is above the cap can never be offered.
    ({"apr_min": APR_CAP, "apr_max": Decimal("0.3000")}, {}, True),
    ({"apr_min": Decimal("0.2401"), "apr_max": Decimal("0.3600")}, {}, False),
]


@pytest.mark.parametrize(("box_changes", "app_changes", "expected"), CRITERIA)
def test_fits_each_criterion(
    box_changes: dict[str, Any], app_changes: dict[str, Any], expected: bool
) -> None:
    assert fits(make_box(**box_changes), make_app(**app_changes), apr_cap=APR_CAP) is expected


def test_apr_cap_is_the_one_passed_in() -> None:
    box = make_box(apr_min=Decimal("0.3000"), apr_max=Decimal("0.3600"))

    assert not fits(box, make_app(), apr_cap=Decimal("0.24"))
    assert fits(box, make_app(), apr_cap=Decimal("0.36"))


def test_match_keeps_only_fitting_boxes_in_order() -> None:
    good_a = make_box()
    too_small = make_box(max_amount=Decimal("5000.00"))
    good_b = make_box(tiers=frozenset({"R5"}))
    over_cap = make_box(apr_min=Decimal("0.3000"), apr_max=Decimal("0.3600"))

    matched = match([good_a, too_small, good_b, over_cap], make_app(), apr_cap=APR_CAP)

    assert matched == [good_a, good_b]


def test_match_of_nothing_is_empty() -> None:
    assert match([], make_app(), apr_cap=APR_CAP) == []


def test_boxes_are_immutable_values() -> None:
    box = make_box()
    with pytest.raises(dataclasses.FrozenInstanceError):
        box.min_amount = Decimal(0)  # type: ignore[misc]


# --- Routing ----------------------------------------------------------------------------------


def product(**overrides: Any) -> Product:
    """A direct-post product of a new live partner (unless one is given) that fits
    referral_payload()'s defaults."""
    return ProductFactory(**overrides)


def partners_of(referral: Referral) -> list[uuid.UUID]:
    return list(referral.leads.order_by("created_at", "id").values_list("partner_id", flat=True))


def lead_partner_set(referral: Referral) -> set[uuid.UUID]:
    return set(referral.leads.values_list("partner_id", flat=True))


@pytest.mark.django_db
def test_matching_partner_gets_one_matched_lead(make_referral: Callable[..., Referral]) -> None:
    fitting = product()
    product(min_amount=Decimal("20000.00"))  # does not fit the 8,000 asked for

    referral = make_referral()

    assert referral.status == ReferralStatus.ROUTED
    (lead,) = referral.leads.all()
    assert (lead.partner_id, lead.product_id) == (fitting.partner_id, fitting.id)
    assert lead.status == LeadStatus.MATCHED
    assert lead.subject_id == referral.subject_id
    assert lead.is_sandbox is False


@pytest.mark.django_db
def test_no_fitting_product_means_no_match(make_referral: Callable[..., Referral]) -> None:
    product(risk_tiers=["R1"])

    referral = make_referral()

    assert referral.status == ReferralStatus.NO_MATCH
    assert not referral.leads.exists()


@pytest.mark.django_db
def test_one_lead_per_partner_with_its_cheapest_fitting_product(
    make_referral: Callable[..., Referral],
) -> None:
    partner = PartnerFactory()
    product(partner=partner, apr_min=Decimal("0.1800"), apr_max=Decimal("0.2400"))
    cheapest = product(partner=partner, apr_min=Decimal("0.1200"), apr_max=Decimal("0.2000"))
    product(partner=partner, apr_min=Decimal("0.1200"), apr_max=Decimal("0.2000"), risk_tiers=[])

    referral = make_referral()

    (lead,) = referral.leads.all()
    assert lead.product_id == cheapest.id


@pytest.mark.django_db
def test_referral_response_lists_leads_in_consumer_order_lowest_apr_first(
    source_client: Any,
) -> None:
    from tests.factories import referral_payload

    aprs = ["0.2000", "0.0800", "0.1500", "0.1000", "0.1800"]
    products = [product(apr_min=Decimal(apr), apr_max=Decimal("0.2400")) for apr in aprs]
    expected = [str(p.partner_id) for p in sorted(products, key=lambda p: p.apr_min)]

    created = source_client.post("/api/v1/referrals", referral_payload(), format="json")
    assert created.status_code == 201, created.content
    assert [lead["partner_id"] for lead in created.json()["leads"]] == expected
    # Store the leads in the opposite order, so only an explicit ordering gets them right.
    leads = list(Lead.objects.filter(referral_id=created.json()["id"]))
    Lead.objects.filter(referral_id=created.json()["id"]).delete()
    Lead.objects.bulk_create(reversed(leads))

    read = source_client.get(f"/api/v1/referrals/{created.json()['id']}")

    assert [lead["partner_id"] for lead in read.json()["leads"]] == expected


@pytest.mark.django_db
def test_consumer_order_is_returned_by_the_selection(
    make_referral: Callable[..., Referral],
) -> None:
    from marketplace.routing import select_boxes

    dear = product(apr_min=Decimal("0.2000"), apr_max=Decimal("0.2400"))
    cheap = product(apr_min=Decimal("0.0800"), apr_max=Decimal("0.1200"))
    middle = product(apr_min=Decimal("0.1500"), apr_max=Decimal("0.1800"))
    product(apr_min=Decimal("0.1500"), apr_max=Decimal("0.1700"), partner=middle.partner)
    referral = make_referral()
    Lead.objects.filter(referral=referral).delete()

    chosen = select_boxes(referral, referral.grant)

    assert [box.partner_id for box in chosen] == [
        cheap.partner_id,
        middle.partner_id,
        dear.partner_id,
    ]
    # Ties on apr_min go to the lower apr_max.
    assert chosen[1].apr_max == Decimal("0.1700")


@pytest.mark.django_db
def test_at_most_max_partners_per_referral_the_cheapest_ones(
    make_referral: Callable[..., Referral], settings: SettingsWrapper
) -> None:
    settings.MAX_PARTNERS_PER_REFERRAL = 2
    products = [
        product(apr_min=Decimal(f"0.{10 + i}00"), apr_max=Decimal("0.2200")) for i in range(4)
    ]

    referral = make_referral()

    assert lead_partner_set(referral) == {products[0].partner_id, products[1].partner_id}


@pytest.mark.django_db
def test_exclusive_product_that_ranks_first_takes_the_lead_alone(
    make_referral: Callable[..., Referral],
) -> None:
    exclusive = product(exclusive=True, apr_min=Decimal("0.1000"), apr_max=Decimal("0.1500"))
    product()
    product()

    referral = make_referral()

    assert partners_of(referral) == [exclusive.partner_id]


@pytest.mark.django_db
def test_exclusive_product_never_shares_a_referral(
    make_referral: Callable[..., Referral],
) -> None:
    """An exclusive product that is not the applicant's best offer is left out rather than
    sold alongside shared partners."""
    exclusive = product(exclusive=True, apr_min=Decimal("0.2000"), apr_max=Decimal("0.2400"))
    shared = product(apr_min=Decimal("0.1000"), apr_max=Decimal("0.1500"))

    referral = make_referral()

    assert partners_of(referral) == [shared.partner_id]
    assert exclusive.partner_id not in lead_partner_set(referral)


@pytest.mark.django_db
def test_product_at_its_daily_cap_is_skipped(make_referral: Callable[..., Referral]) -> None:
    capped = product(daily_cap=1)
    other = product()

    first = make_referral()
    second = make_referral()

    assert lead_partner_set(first) == {capped.partner_id, other.partner_id}
    assert lead_partner_set(second) == {other.partner_id}


@pytest.mark.django_db
def test_sandbox_traffic_does_not_use_up_a_live_cap(make_referral: Callable[..., Referral]) -> None:
    capped = product(daily_cap=1)

    sandbox = make_referral(is_sandbox=True)
    live = make_referral()
    second_sandbox = make_referral(is_sandbox=True)

    # Each mode counts its own leads against the cap.
    assert lead_partner_set(sandbox) == {capped.partner_id}
    assert lead_partner_set(live) == {capped.partner_id}
    assert lead_partner_set(second_sandbox) == set()


@pytest.mark.django_db
def test_product_at_its_monthly_cap_is_skipped(make_referral: Callable[..., Referral]) -> None:
    capped = product(monthly_cap=1)

    make_referral()
    second = make_referral()

    assert capped.partner_id not in lead_partner_set(second)
    assert second.status == ReferralStatus.NO_MATCH


@pytest.mark.django_db
def test_yesterdays_leads_do_not_count_against_the_daily_cap(
    make_referral: Callable[..., Referral],
) -> None:
    capped = product(daily_cap=1)
    first = make_referral()
    # As yesterday's award left it: the lead, its reservation and the day counter it took
    # (caps are counted in per-day counters, not by counting lead rows).
    yesterday = timezone.now() - timedelta(days=1)
    Lead.objects.filter(referral=first).update(created_at=yesterday)
    assert CapCounter.objects.filter(owner_id=capped.id, kind="day").update(period=yesterday.date())
    CapReservation.objects.filter(lead__referral=first).update(day=yesterday.date())

    second = make_referral()

    assert lead_partner_set(second) == {capped.partner_id}
    third = make_referral()  # today's one lead is taken
    assert lead_partner_set(third) == set()


@pytest.mark.django_db
def test_partner_whose_cheapest_product_is_capped_gets_the_lead_on_another_product(
    make_referral: Callable[..., Referral],
) -> None:
    partner = PartnerFactory()
    capped = product(partner=partner, daily_cap=1, apr_min=Decimal("0.1000"))
    spare = product(partner=partner, apr_min=Decimal("0.1800"), apr_max=Decimal("0.2200"))

    first = make_referral()
    second = make_referral()

    assert first.leads.get().product_id == capped.id
    assert second.leads.get().product_id == spare.id


@pytest.mark.django_db
def test_same_person_within_dedupe_window_is_not_sent_to_the_same_partner_again(
    make_referral: Callable[..., Referral],
) -> None:
    seen = product(dedupe_days=30)
    first = make_referral(national_id="110101199003070011")
    assert lead_partner_set(first) == {seen.partner_id}
    fresh = product(dedupe_days=30)

    second = make_referral(national_id="110101199003070011")

    assert second.subject_id == first.subject_id
    assert lead_partner_set(second) == {fresh.partner_id}


@pytest.mark.django_db
def test_another_person_is_not_deduped(make_referral: Callable[..., Referral]) -> None:
    seen = product(dedupe_days=30)

    make_referral(national_id="110101199003070011")
    second = make_referral(national_id="110101199003070022")

    assert lead_partner_set(second) == {seen.partner_id}


@pytest.mark.django_db
def test_same_person_after_the_dedupe_window_is_sent_again(
    make_referral: Callable[..., Referral],
) -> None:
    seen = product(dedupe_days=7)
    first = make_referral(national_id="110101199003070011")
    Lead.objects.filter(referral=first).update(created_at=timezone.now() - timedelta(days=8))

    second = make_referral(national_id="110101199003070011")

    assert lead_partner_set(second) == {seen.partner_id}


@pytest.mark.django_db
def test_zero_dedupe_days_disables_dedupe(make_referral: Callable[..., Referral]) -> None:
    seen = product(dedupe_days=0)

    make_referral(national_id="110101199003070011")
    second = make_referral(national_id="110101199003070011")

    assert lead_partner_set(second) == {seen.partner_id}


@pytest.mark.django_db
@pytest.mark.parametrize(
    "status", [PartnerStatus.PAUSED, PartnerStatus.ONBOARDING, PartnerStatus.OFFBOARDED]
)
def test_partner_that_is_not_live_is_not_routed_to(
    make_referral: Callable[..., Referral], status: str
) -> None:
    live = product()
    paused = product()
    make_referral()  # both are in the cached index now
    paused.partner.status = status
    paused.partner.save()

    referral = make_referral()

    assert lead_partner_set(referral) == {live.partner_id}


@pytest.mark.django_db
def test_inactive_product_is_not_routed_to(make_referral: Callable[..., Referral]) -> None:
    retired = product()
    make_referral()
    retired.is_active = False
    retired.save()

    assert make_referral().status == ReferralStatus.NO_MATCH


@pytest.mark.django_db
def test_sandbox_source_key_makes_sandbox_leads(make_referral: Callable[..., Referral]) -> None:
    product()

    referral = make_referral(is_sandbox=True)

    assert referral.is_sandbox is True
    assert [lead.is_sandbox for lead in referral.leads.all()] == [True]


@pytest.mark.django_db
def test_a_live_applicant_never_reaches_a_partner_in_sandbox(
    make_referral: Callable[..., Referral],
) -> None:
    live = product()
    product(partner=PartnerFactory(status=PartnerStatus.SANDBOX))

    referral = make_referral()

    # The sandbox partner's sandbox key would otherwise read a real person's data.
    flags = {lead.partner_id: lead.is_sandbox for lead in referral.leads.all()}
    assert flags == {live.partner_id: False}


@pytest.mark.django_db
def test_sandbox_key_over_the_api_marks_referral_and_leads_sandbox(
    consent_text: object,
) -> None:
    from rest_framework.test import APIClient

    from partners.keys import issue_api_key
    from partners.models import KeyMode
    from tests.factories import TrafficSourceFactory, referral_payload

    product()
    client = APIClient()
    key = issue_api_key(source=TrafficSourceFactory(), mode=KeyMode.SANDBOX).plaintext
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")

    response = client.post("/api/v1/referrals", referral_payload(), format="json")

    assert response.status_code == 201, response.content
    assert response.json()["is_sandbox"] is True
    assert Lead.objects.get().is_sandbox is True


@pytest.mark.django_db
def test_named_partner_consent_restricts_routing_to_the_named_partners(
    make_referral: Callable[..., Referral],
) -> None:
    named = product()
    product()
    product()
    consent = {
        **_default_consent(),
        "scope": "named_partners",
        "partner_ids": [str(named.partner_id)],
    }

    referral = make_referral(consent=consent)

    assert lead_partner_set(referral) == {named.partner_id}
    assert set(referral.grant.recipients.values_list("id", flat=True)) == {named.partner_id}


@pytest.mark.django_db
def test_named_partner_that_does_not_fit_gets_nothing(
    make_referral: Callable[..., Referral],
) -> None:
    named = product(risk_tiers=["R1"])
    product()
    consent = {
        **_default_consent(),
        "scope": "named_partners",
        "partner_ids": [str(named.partner_id)],
    }

    referral = make_referral(consent=consent)

    assert referral.status == ReferralStatus.NO_MATCH


@pytest.mark.django_db
def test_matched_partner_consent_adds_the_matched_partners_as_recipients(
    make_referral: Callable[..., Referral],
) -> None:
    first = product()
    second = product()
    product(risk_tiers=["R1"])

    referral = make_referral()

    assert set(referral.grant.recipients.values_list("id", flat=True)) == {
        first.partner_id,
        second.partner_id,
    }


@pytest.mark.django_db
def test_ping_post_products_are_auctioned_not_given_leads_at_intake(
    make_referral: Callable[..., Referral],
) -> None:
    ping = product(delivery_mode=DeliveryMode.PING_POST, ping_url="http://127.0.0.1:9/ping")

    referral = make_referral()

    assert referral.status == ReferralStatus.ROUTED
    assert not referral.leads.exists()
    assert referral.auction.candidate_product_ids == [str(ping.id)]


@pytest.mark.django_db
def test_partner_with_a_ping_post_and_a_direct_product_is_offered_the_cheaper_one(
    make_referral: Callable[..., Referral],
) -> None:
    partner = PartnerFactory()
    ping = product(partner=partner, delivery_mode=DeliveryMode.PING_POST, apr_min=Decimal("0.1"))
    product(partner=partner)

    referral = make_referral()

    # One product per partner, the applicant's cheapest: here the ping-post one.
    assert not referral.leads.exists()
    assert referral.auction.candidate_product_ids == [str(ping.id)]


@pytest.mark.django_db
def test_pull_product_makes_an_available_lead(make_referral: Callable[..., Referral]) -> None:
    product(delivery_mode=DeliveryMode.PULL, post_url="")

    lead = make_referral().leads.get()

    assert (lead.delivery_mode, lead.status) == (DeliveryMode.PULL, LeadStatus.AVAILABLE)


@pytest.mark.django_db
def test_product_over_the_apr_cap_is_not_routed_to(
    make_referral: Callable[..., Referral], settings: SettingsWrapper
) -> None:
    settings.APR_CAP = Decimal("0.24")
    product(apr_min=Decimal("0.2500"), apr_max=Decimal("0.3600"))

    assert make_referral().status == ReferralStatus.NO_MATCH


@pytest.mark.django_db
def test_expired_consent_is_stored_as_not_routable(
    make_referral: Callable[..., Referral],
) -> None:
    product()
    consent = {
        **_default_consent(),
        "collected_at": (timezone.now() - timedelta(days=2)).isoformat(),
        "expires_at": (timezone.now() - timedelta(days=1)).isoformat(),
    }

    referral = make_referral(consent=consent)

    assert referral.status == ReferralStatus.NOT_ROUTABLE
    assert not referral.leads.exists()


@pytest.mark.django_db
def test_consent_without_the_referral_purpose_is_not_routable(
    make_referral: Callable[..., Referral],
) -> None:
    product()

    referral = make_referral(consent={**_default_consent(), "purposes": ["marketing"]})

    assert referral.status == ReferralStatus.NOT_ROUTABLE
    assert not referral.leads.exists()


def _default_consent() -> dict[str, Any]:
    from tests.factories import referral_payload

    return referral_payload()["consent"]


def test_a_partner_on_routing_hold_gets_no_leads(source_client: APIClient) -> None:
    from partners.holds import lift_hold, place_hold
    from partners.models import HoldReason

    product = ProductFactory()
    place_hold(partner_id=product.partner_id, reason=HoldReason.CREDIT_LIMIT)
    held = source_client.post("/api/v1/referrals", referral_payload(), format="json")
    assert held.json()["leads"] == []
    lift_hold(partner_id=product.partner_id, reason=HoldReason.CREDIT_LIMIT)
    released = source_client.post("/api/v1/referrals", referral_payload(), format="json")
    assert [lead["partner_id"] for lead in released.json()["leads"]] == [str(product.partner_id)]
