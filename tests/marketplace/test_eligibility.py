"""Eligibility (marketplace.eligibility): credit-box reason codes agree with ``fits``, the
rules decide as a plain reference written from their text, and routing reports each
rejected product with its reason codes."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from marketplace.eligibility import (
    Facts,
    ReasonCode,
    Rejection,
    decide,
    explain_box,
)
from marketplace.matching import CreditBox, fits
from marketplace.models import Referral
from marketplace.regulation import Rules
from marketplace.routing import screen_boxes
from tests.factories import PartnerFactory, ProductFactory
from tests.marketplace.test_matching import make_app, make_box
from tests.marketplace.test_matching_index import REGIONS, applications, aprs, boxes

BOX_CODES = {code for code in ReasonCode.values if code.startswith("box_")}


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_explain_box_is_empty_exactly_when_the_box_fits(data: st.DataObject) -> None:
    box = data.draw(boxes(), label="box")
    app, apr_cap = data.draw(applications([box]), label="application")

    reasons = explain_box(box, app, apr_cap)

    assert fits(box, app, apr_cap=apr_cap) == (reasons == ())
    assert set(reasons) <= BOX_CODES
    assert len(set(reasons)) == len(reasons)


@pytest.mark.parametrize(
    ("box_changes", "app_changes", "code"),
    [
        ({"min_amount": Decimal("9000.00")}, {}, "box_amount"),
        ({"max_term": 6}, {}, "box_term"),
        ({"tiers": frozenset({"R1"})}, {}, "box_tier"),
        ({"excluded_regions": frozenset({"CN-GD"})}, {}, "box_region"),
        ({"regions": frozenset({"CN-BJ"})}, {}, "box_region"),
        ({"max_age": 30}, {}, "box_age"),
        ({"min_income": Decimal("6000")}, {}, "box_income"),
        ({"employment_types": frozenset({"retired"})}, {}, "box_employment"),
        ({"purposes": frozenset({"education"})}, {}, "box_purpose"),
        ({"channels": frozenset({"web"})}, {}, "box_channel"),
        ({"apr_min": Decimal("0.2401")}, {}, "box_apr"),
    ],
)
def test_each_credit_box_criterion_has_its_own_code(
    box_changes: dict[str, object], app_changes: dict[str, object], code: str
) -> None:
    box = make_box(**box_changes)

    assert explain_box(box, make_app(**app_changes), Decimal("0.24")) == (code,)


def test_every_reason_code_is_in_the_module_table() -> None:
    import marketplace.eligibility as eligibility

    table = eligibility.__doc__ or ""
    for code in ReasonCode.values:
        assert f"\n{code} " in table, code


# --- The rules against a reference written from their text ------------------------------------

PARTNERS = [uuid.uuid4() for _ in range(4)]


DAY = date(2026, 6, 1)
days = st.integers(-3, 3).map(lambda n: DAY + timedelta(days=n))


@st.composite
def screened_boxes(draw: st.DrawFn) -> CreditBox:
    return make_box(
        partner_id=draw(st.sampled_from(PARTNERS)),
        apr_min=Decimal("0.1000"),
        apr_max=draw(aprs),
        all_in_cost=draw(st.none() | aprs),
        partner_sandbox=draw(st.booleans()),
    )


@st.composite
def facts(draw: st.DrawFn) -> Facts:
    min_age = draw(st.integers(16, 30))
    return Facts(
        # Late in the UTC day: the licence dates are read in UTC, whatever the time zone.
        at=datetime(2026, 6, 1, 23, 30, tzinfo=UTC).astimezone(ZoneInfo("Asia/Shanghai")),
        is_sandbox=draw(st.booleans()),
        age=draw(st.integers(10, 90)),
        region=draw(st.sampled_from(REGIONS)),
        rules=Rules(
            all_in_cost_cap=draw(aprs),
            min_age=min_age,
            max_age=draw(st.none() | st.integers(min_age, 90)),
            excluded_regions=draw(st.frozensets(st.sampled_from(REGIONS))),
            rule_set_id=draw(st.none() | st.integers(1, 9)),
        ),
        allowed_partners=draw(st.none() | st.frozensets(st.sampled_from(PARTNERS))),
        suppressing_partners=draw(st.frozensets(st.sampled_from(PARTNERS))),
        licences={
            partner: tuple(sorted((draw(days), draw(days))))
            for partner in PARTNERS
            if draw(st.integers(0, 4)) > 0  # now and then unlisted
        },
    )


def reference(box: CreditBox, f: Facts, recent: set[uuid.UUID], full: set[uuid.UUID]) -> set[str]:
    """From the rule text: a live applicant never reaches a sandbox partner; a partner with
    no licence, or one not yet valid on the referral's UTC date, is unlisted, and one whose
    last valid day is before that date expired; the worst all-in cost (without fee terms,
    the top APR) may not exceed the cap; the applicant's age must lie in
    the rule set's range and the region must not be excluded; consent must name the partner
    unless it covers any matched partner; a suppressing partner never gets the person. Only
    when none of these rejects: a partner that got the person within its window is skipped,
    then a product at its cap."""
    reasons = set()
    if box.partner_sandbox and not f.is_sandbox:
        reasons.add("partner_sandbox")
    day = DAY  # f.at is 2026-06-01 in UTC (already the 2nd in Shanghai)
    licence = f.licences.get(box.partner_id)
    if licence is None or day < licence[0]:
        reasons.add("licence_missing")
    elif day > licence[1]:
        reasons.add("licence_expired")
    cost = box.apr_max if box.all_in_cost is None else box.all_in_cost
    if cost > f.rules.all_in_cost_cap:
        reasons.add("reg_all_in_cost")
    too_old = f.rules.max_age is not None and f.age > f.rules.max_age
    if f.age < f.rules.min_age or too_old:
        reasons.add("reg_age")
    if f.region in f.rules.excluded_regions:
        reasons.add("reg_region")
    if f.allowed_partners is not None and box.partner_id not in f.allowed_partners:
        reasons.add("consent_scope")
    if box.partner_id in f.suppressing_partners:
        reasons.add("suppressed")
    if reasons:
        return reasons
    if box.partner_id in recent:
        return {"dedupe"}
    if box.product_id in full:
        return {"volume_cap"}
    return set()


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_decisions_equal_the_reference(data: st.DataObject) -> None:
    catalogue = data.draw(st.lists(screened_boxes(), max_size=12), label="boxes")
    f = data.draw(facts(), label="facts")
    recent = data.draw(st.sets(st.sampled_from(PARTNERS)), label="recent")
    full = {box.product_id for box in catalogue if data.draw(st.booleans())}

    screening = decide(catalogue, f, recent_partners=recent, full_products=full)

    expected = {box.product_id: reference(box, f, recent, full) for box in catalogue}
    assert screening.eligible == [box for box in catalogue if not expected[box.product_id]]
    assert screening.rejected == [
        Rejection(box.product_id, box.partner_id, tuple(sorted_codes(expected[box.product_id])))
        for box in catalogue
        if expected[box.product_id]
    ]
    assert screening.rule_set_id == f.rules.rule_set_id


def sorted_codes(codes: set[str]) -> list[str]:
    """In the order of the documented list (the order ``decide`` reports them in)."""
    return [code for code in ReasonCode.values if code in codes]


# --- Through routing --------------------------------------------------------------------------


@pytest.mark.django_db
def test_screening_reports_sandbox_cost_and_dedupe_rejections(
    make_referral: Callable[..., Referral],
) -> None:
    fitting = ProductFactory()
    sandbox = ProductFactory(partner=PartnerFactory(status="sandbox"))
    dear = ProductFactory(apr_max=Decimal("0.3000"))
    referral = make_referral()
    assert set(referral.leads.values_list("product_id", flat=True)) == {fitting.id}

    screening = screen_boxes(referral, referral.grant)

    assert screening.eligible == []
    reasons = {r.product_id: r.reasons for r in screening.rejected}
    assert reasons == {
        fitting.id: ("dedupe",),
        sandbox.id: ("partner_sandbox",),
        dear.id: ("reg_all_in_cost",),
    }
