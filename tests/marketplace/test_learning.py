"""Learning conversion rates: which stages a lead decides (against a reference written from
the rule), priors from the product's expectations leaning on product-wide evidence, and the
counts table kept by the refresh task, idempotent and incremental."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from marketplace import learning
from marketplace.learning import Expectation, LeadFacts, funnel, lead_outcomes
from marketplace.models import ConversionCounts, EventType, Lead, LeadEvent, LeadStatus
from tests.factories import PartnerFactory, ProductFactory

TODAY = date(2026, 6, 30)
EVENTS = ["accepted", "rejected", "approved", "funded", "returned"]


def reference(status: str, age_days: int, events: set[str]) -> dict[str, bool]:
    """From the rule. The partner saw the lead when it was delivered (or refused at post)
    or reported anything. Acceptance: any of accepted, approved, funded, returned; refusal:
    a refused post, a rejection without acceptance, or 3 days of silence after the
    creation day. Once accepted: returned (else 10 days pass); approved or funded (refused
    by a rejection, or 14 days); once approved: funded (else 30 days)."""
    seen_statuses = {
        "delivered", "post_rejected", "accepted", "rejected", "approved", "funded", "returned",
    }  # fmt: skip
    if status not in seen_statuses and not events:
        return {}
    out: dict[str, bool] = {}
    accepted = bool(events & {"accepted", "approved", "funded", "returned"})
    if accepted:
        out["accept"] = True
    elif status == "post_rejected" or "rejected" in events or age_days > 3:
        out["accept"] = False
    if not accepted:
        return out
    if "returned" in events:
        out["return"] = True
    elif age_days > 10:
        out["return"] = False
    approved = bool(events & {"approved", "funded"})
    if approved:
        out["approve"] = True
    elif "rejected" in events or age_days > 14:
        out["approve"] = False
    if approved:
        if "funded" in events:
            out["fund"] = True
        elif age_days > 30:
            out["fund"] = False
    return out


@settings(max_examples=500, deadline=None)
@given(
    st.sampled_from([s.value for s in LeadStatus]),
    st.integers(min_value=0, max_value=60),
    st.sets(st.sampled_from(EVENTS)),
)
def test_lead_outcomes_follow_the_rule(status: str, age: int, events: set[str]) -> None:
    facts = LeadFacts(status, TODAY - timedelta(days=age), frozenset(events))
    got = dict(lead_outcomes(facts, today=TODAY))
    assert got == reference(status, age, events)


def test_a_cold_product_ranks_on_its_expectations() -> None:
    expected = Expectation(accept=0.7, approve=0.4, fund=0.9, returned=0.1, strength=30)
    cold = funnel(expected, product_counts={}, segment_counts={})
    assert cold.accept.alpha == pytest.approx(0.7 * 30) and cold.accept.beta == pytest.approx(9)
    assert (cold.approve.mean, cold.fund.mean, cold.returned.mean) == pytest.approx((0.4, 0.9, 0.1))


def test_a_segment_with_little_evidence_leans_on_the_products() -> None:
    expected = Expectation(accept=0.8, strength=20)
    product_wide = {"accept": (1000, 300)}  # the product accepts 30% overall
    thin = funnel(expected, product_counts=product_wide, segment_counts={"accept": (2, 2)})
    rich = funnel(expected, product_counts=product_wide, segment_counts={"accept": (2000, 1800)})
    assert 0.3 < thin.accept.mean < 0.45  # near the product's 30%, not the segment's 2/2
    assert rich.accept.mean == pytest.approx(0.9, abs=0.01)  # evidence outweighs priors


@pytest.fixture
def leads(make_referral: object) -> list[Lead]:
    product = ProductFactory(partner=PartnerFactory())
    made = []
    for _ in range(4):
        referral = make_referral()  # type: ignore[operator]
        made.extend(referral.leads.all())
    assert {lead.product_id for lead in made} == {product.id}
    return made


def _event(lead: Lead, kind: str, n: int) -> None:
    LeadEvent.objects.create(
        lead=lead,
        partner_id=lead.partner_id,
        external_id=f"e-{lead.id}-{kind}-{n}",
        type=kind,
        occurred_at=lead.created_at,
    )


def _counts() -> dict[str, tuple[int, int]]:
    return {row.stage: (row.trials, row.successes) for row in ConversionCounts.objects.all()}


@pytest.mark.django_db
def test_refresh_counts_decided_leads_once_however_often_it_runs(leads: list[Lead]) -> None:
    Lead.objects.filter(pk__in=[lead.pk for lead in leads]).update(
        status=LeadStatus.DELIVERED, delivered_at=leads[0].created_at
    )
    accepted, refused, approved, _silent = leads
    _event(accepted, EventType.ACCEPTED, 1)
    _event(approved, EventType.ACCEPTED, 1)
    _event(approved, EventType.APPROVED, 2)
    Lead.objects.filter(pk=refused.pk).update(status=LeadStatus.POST_REJECTED)
    now = datetime.now(UTC)

    learning.refresh_counts(now=now)
    first = _counts()
    learning.refresh_counts(now=now + timedelta(seconds=60))

    # Three decided acceptances (the silent lead is not yet a failure); none decided after.
    assert first == {"accept": (3, 2), "approve": (1, 1)} == _counts()


@pytest.mark.django_db
def test_refresh_counts_picks_up_later_events_and_silence(leads: list[Lead]) -> None:
    Lead.objects.filter(pk__in=[lead.pk for lead in leads]).update(
        status=LeadStatus.DELIVERED, delivered_at=leads[0].created_at
    )
    now = datetime.now(UTC)
    learning.refresh_counts(now=now)
    assert _counts() == {}

    _event(leads[0], EventType.ACCEPTED, 1)
    learning.refresh_counts(now=now + timedelta(minutes=1))
    assert _counts() == {"accept": (1, 1)}

    # Four days on, the three silent leads' acceptance is decided: refused.
    learning.refresh_counts(now=now + timedelta(days=4))
    assert _counts() == {"accept": (4, 1)}
    inputs = learning.load_inputs(today=(now + timedelta(days=4)).date())
    assert inputs.counts.product(leads[0].product_id)["accept"] == (4, 1)


def test_amount_bands_make_segments() -> None:
    from marketplace.bands import amount_band_label, segment_key

    assert [amount_band_label(Decimal(v)) for v in ("-1", "0", "2999.99", "3000", "45000")] == [
        "0-2999",
        "0-2999",
        "0-2999",
        "3000-9999",
        "30000+",
    ]
    assert segment_key(risk_tier="R4", channel="app", amount=Decimal(5000)) == "R4|app|3000-9999"


@pytest.mark.django_db
def test_the_beat_task_refreshes_the_counts(leads: list[Lead]) -> None:
    from marketplace.tasks import refresh_conversion_counts

    Lead.objects.filter(pk=leads[0].pk).update(status=LeadStatus.POST_REJECTED)

    assert refresh_conversion_counts.apply(throw=True).result == 1
    assert _counts() == {"accept": (1, 0)}
