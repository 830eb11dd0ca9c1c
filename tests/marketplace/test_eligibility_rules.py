"""The partner registry (licences), the regulatory rule sets in force at a referral's time and
the all-in cost cap: routing never reaches an unlisted or expired partner, nor a product whose
all-in cost can exceed the cap, and every refusal carries its reason code."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import date, timedelta
from decimal import Decimal
from fractions import Fraction

import pytest
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.utils import timezone
from hypothesis import given, settings
from hypothesis import strategies as st

from marketplace.eligibility import Facts, licence_reason, static_reasons
from marketplace.models import Referral, ReferralStatus
from marketplace.models.regulation import RuleSet
from marketplace.regulation import default_rules, publish_rule_set, rules_at
from marketplace.routing import screen_boxes
from partners.all_in_cost import worst_all_in_cost
from partners.registry import PartnerLicence
from tests.factories import PartnerFactory, PartnerLicenceFactory, ProductFactory
from tests.marketplace.test_matching import make_box

# --- All-in cost: the formula against a brute force written from its text --------------------

rates = st.integers(min_value=0, max_value=1000).map(lambda bp: Decimal(bp).scaleb(-4))


def reference_worst(apr_max: Decimal, f: Decimal, m: Decimal, lo: int, hi: int) -> Fraction:
    """Exact rationals over *every* term in the range: APR + 24 (f + m n) / (n + 1)."""
    return max(
        Fraction(apr_max) + 24 * (Fraction(f) + Fraction(m) * n) / (n + 1)
        for n in range(max(lo, 1), max(hi, 1) + 1)
    )


@settings(max_examples=300, deadline=None)
@given(
    apr_max=rates,
    upfront=rates,
    monthly=st.integers(0, 300).map(lambda bp: Decimal(bp).scaleb(-4)),
    terms=st.tuples(st.integers(1, 60), st.integers(1, 60)).map(sorted),
)
def test_worst_all_in_cost_is_the_maximum_over_every_term_rounded_up(
    apr_max: Decimal, upfront: Decimal, monthly: Decimal, terms: list[int]
) -> None:
    lo, hi = terms
    worst = worst_all_in_cost(
        apr_max=apr_max,
        upfront_fee_rate=upfront,
        monthly_fee_rate=monthly,
        min_term=lo,
        max_term=hi,
    )
    exact = reference_worst(apr_max, upfront, monthly, lo, hi)
    # Rounded up to 0.0001: never below the exact value, less than one step above it.
    assert Fraction(worst) >= exact
    assert Fraction(worst) - exact < Fraction(1, 10_000)
    assert worst.as_tuple().exponent == -4


def test_all_in_cost_worked_example() -> None:
    """18% APR, a 2% service fee and 0.5% a month over 12 months: 18% + 24 x (0.02 + 0.06)
    / 13 = 18% + 14.77% = 32.77%, over a 24% cap although the APR alone is under it."""
    worst = worst_all_in_cost(
        apr_max=Decimal("0.1800"),
        upfront_fee_rate=Decimal("0.0200"),
        monthly_fee_rate=Decimal("0.0050"),
        min_term=12,
        max_term=12,
    )
    assert worst == Decimal("0.3277")


def test_no_fees_cost_the_top_apr() -> None:
    zero = Decimal("0")
    assert worst_all_in_cost(
        apr_max=Decimal("0.2200"),
        upfront_fee_rate=zero,
        monthly_fee_rate=zero,
        min_term=3,
        max_term=24,
    ) == Decimal("0.2200")


# --- Licences ----------------------------------------------------------------------------------


def facts_at(day: date) -> Facts:
    at = timezone.now().replace(year=day.year, month=day.month, day=day.day, hour=12)
    return Facts(
        at=at,
        is_sandbox=False,
        age=30,
        region="CN-GD",
        rules=default_rules(),
        allowed_partners=None,
    )


@pytest.mark.parametrize(
    ("valid_from", "expires_on", "day", "expected"),
    [
        (None, None, date(2026, 6, 1), "licence_missing"),
        (date(2026, 6, 2), date(2027, 1, 1), date(2026, 6, 1), "licence_missing"),
        (date(2026, 6, 1), date(2027, 1, 1), date(2026, 6, 1), None),
        (date(2025, 1, 1), date(2026, 6, 1), date(2026, 6, 1), None),  # last day in force
        (date(2025, 1, 1), date(2026, 5, 31), date(2026, 6, 1), "licence_expired"),
    ],
)
def test_licence_in_force_on_the_referrals_date(
    valid_from: date | None, expires_on: date | None, day: date, expected: str | None
) -> None:
    box = make_box()
    period = None if valid_from is None or expires_on is None else (valid_from, expires_on)
    facts = replace(facts_at(day), licences={box.partner_id: period} if period else {})

    assert licence_reason(period, facts.at) == expected
    assert static_reasons(box, facts) == ((expected,) if expected else ())


@pytest.mark.django_db
def test_unlisted_and_expired_partners_are_never_routed_to(
    make_referral: Callable[..., Referral],
) -> None:
    listed = ProductFactory()
    unlisted = ProductFactory(partner=PartnerFactory(licence=None))
    lapsed = ProductFactory()
    PartnerLicence.objects.filter(partner=lapsed.partner).update(
        expires_on=timezone.now().date() - timedelta(days=1)
    )

    referral = make_referral()

    assert set(referral.leads.values_list("partner_id", flat=True)) == {listed.partner_id}
    reasons = {r.product_id: r.reasons for r in screen_boxes(referral, referral.grant).rejected}
    assert reasons[unlisted.id] == ("licence_missing",)
    assert reasons[lapsed.id] == ("licence_expired",)


@pytest.mark.django_db
def test_a_new_licence_reaches_routing_without_a_restart(
    make_referral: Callable[..., Referral],
) -> None:
    """Licences are read per referral: one recorded now counts from the next referral."""
    product = ProductFactory(partner=PartnerFactory(licence=None))
    assert make_referral().status == ReferralStatus.NO_MATCH

    PartnerLicenceFactory(partner=product.partner)

    assert make_referral().leads.get().product_id == product.id


# --- Regulatory rule sets ----------------------------------------------------------------------


def rule_set(*, days_ago: float, **changes: object) -> RuleSet:
    values: dict[str, object] = {
        "effective_from": timezone.now() - timedelta(days=days_ago),
        "all_in_cost_cap": Decimal("0.2400"),
        "min_age": 18,
        "max_age": None,
        "excluded_regions": [],
        "note": "test",
        "created_by": None,
    }
    values.update(changes)
    return publish_rule_set(**values)  # type: ignore[arg-type]


@pytest.mark.django_db
def test_the_rule_set_in_force_at_the_referrals_time_applies() -> None:
    assert rules_at(timezone.now()).rule_set_id is None  # none yet: the default
    old = rule_set(days_ago=10, max_age=60)
    current = rule_set(days_ago=1, max_age=50)
    rule_set(days_ago=-1, max_age=40)  # not yet in force

    assert rules_at(timezone.now()).rule_set_id == current.pk
    assert rules_at(timezone.now() - timedelta(days=5)).rule_set_id == old.pk
    assert rules_at(timezone.now()).max_age == 50


@pytest.mark.django_db
def test_regulatory_age_region_and_cost_rules_refuse_with_their_codes(
    make_referral: Callable[..., Referral],
) -> None:
    fitting = ProductFactory()
    # 22% APR, 0.08% a month over 3..24 months: at most 22% + 24 x 0.0192 / 25 = 23.85%.
    fees = ProductFactory(monthly_fee_rate=Decimal("0.0008"))
    dear = ProductFactory(upfront_fee_rate=Decimal("0.0300"))  # 22% + 24 x 0.03 / 4 = 40%
    rule_set(days_ago=1, excluded_regions=["CN-XZ"], max_age=50)

    ok = make_referral()
    assert {lead.product_id for lead in ok.leads.all()} == {fitting.id, fees.id}
    assert {r.product_id: r.reasons for r in screen_boxes(ok, ok.grant).rejected}[dear.id] == (
        "reg_all_in_cost",
    )

    tibet = make_referral(region="CN-XZ")
    assert tibet.status == ReferralStatus.NO_MATCH
    assert {r.reasons for r in screen_boxes(tibet, tibet.grant).rejected} >= {("reg_region",)}


@pytest.mark.django_db
def test_a_rule_set_below_the_legal_age_is_refused_with_field_messages() -> None:
    with pytest.raises(ValidationError) as refused:
        rule_set(days_ago=0, min_age=16, max_age=10, excluded_regions=["tibet"])

    assert set(refused.value.message_dict) == {"min_age", "max_age", "excluded_regions"}
    assert not RuleSet.objects.exists()


@pytest.mark.django_db
def test_admin_adds_versions_and_never_edits_or_deletes_one(admin_client: object) -> None:
    from django.test import Client

    assert isinstance(admin_client, Client)
    response = admin_client.post(
        "/admin/marketplace/ruleset/add/",
        {
            "effective_from_0": "2026-01-01",
            "effective_from_1": "00:00:00",
            "all_in_cost_cap": "0.2200",
            "min_age": "20",
            "max_age": "",
            "excluded_regions": "cn-xz, CN-XJ",
            "note": "Provincial notice",
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    (version,) = RuleSet.objects.all()
    assert version.excluded_regions == ["CN-XJ", "CN-XZ"]
    assert version.created_by == User.objects.get(username="admin")

    page = admin_client.get(f"/admin/marketplace/ruleset/{version.pk}/change/")
    assert page.status_code == 200
    assert b'name="_save"' not in page.content  # read-only
    edit = admin_client.post(
        f"/admin/marketplace/ruleset/{version.pk}/change/", {"all_in_cost_cap": "0.3600"}
    )
    assert edit.status_code == 403
    assert admin_client.post(f"/admin/marketplace/ruleset/{version.pk}/delete/").status_code == 403
    version.refresh_from_db()
    assert version.all_in_cost_cap == Decimal("0.2200")
