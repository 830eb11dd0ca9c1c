"""Revenue share: partners report a funded loan's revenue per period (``revenue`` events);
billing charges the schedule's ``revshare_rate`` on each, once per event."""

from __future__ import annotations

import itertools
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import IntegrityError, transaction
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from billing.documents import context
from billing.fees import FeeScheduleError, create_fee_schedule
from billing.invoicing import invoice_partner
from billing.models import Charge, EntryType, FeeKind
from billing.pricing import FeeTerms, Tier, price
from billing.reconcile import reconcile
from marketplace.events import EventError
from marketplace.models import Lead, LeadStatus
from tests.billing.builders import LeadBuilder, current_period, ledger, post, report, schedule
from tests.conftest import partner_client
from tests.factories import PartnerFactory

TERMS = FeeTerms(
    cpl=Decimal("40.00"),
    cpa=Decimal("250.00"),
    cpf_rate=Decimal("0.0300"),
    cpf_min=Decimal("50.00"),
    cpf_max=Decimal("2000.00"),
    revshare_rate=Decimal("0.1000"),
)
revenues = st.decimals(min_value=Decimal(0), max_value=Decimal("10000000"), places=2)
rates = st.decimals(min_value=Decimal(0), max_value=Decimal(1), places=4)


# --- pricing (pure) ---------------------------------------------------------------------


@given(revenue=revenues, rate=rates)
def test_revshare_is_quantized_to_cents_and_within_the_revenue(
    revenue: Decimal, rate: Decimal
) -> None:
    fee = price("revshare", FeeTerms(**{**TERMS.__dict__, "revshare_rate": rate}), revenue=revenue)
    assert fee == fee.quantize(Decimal("0.01"))
    assert Decimal(0) <= fee <= revenue
    assert abs(fee - revenue * rate) <= Decimal("0.005")


@given(a=revenues, b=revenues, r1=rates, r2=rates)
def test_revshare_is_monotone_in_revenue_and_rate(
    a: Decimal, b: Decimal, r1: Decimal, r2: Decimal
) -> None:
    low, high = sorted([a, b])
    lo_rate, hi_rate = sorted([r1, r2])

    def fee(revenue: Decimal, rate: Decimal) -> Decimal:
        terms = FeeTerms(**{**TERMS.__dict__, "revshare_rate": rate})
        return price("revshare", terms, revenue=revenue)

    assert fee(low, lo_rate) <= fee(high, lo_rate) <= fee(high, hi_rate)


@given(revenue=revenues, unit=st.integers(min_value=1, max_value=10_000))
def test_zero_rate_is_free_and_tiers_never_apply(revenue: Decimal, unit: int) -> None:
    zero = FeeTerms(**{**TERMS.__dict__, "revshare_rate": Decimal(0)})
    assert price("revshare", zero, revenue=revenue, unit=unit) == Decimal("0.00")
    tiered = FeeTerms(**{**TERMS.__dict__, "tiers": (Tier(1, cpl=Decimal("1.00")),)})
    assert price("revshare", tiered, revenue=revenue, unit=unit) == price(
        "revshare", TERMS, revenue=revenue
    )


def test_revshare_needs_the_revenue() -> None:
    with pytest.raises(ValueError, match="revenue"):
        price("revshare", TERMS)
    assert price("revshare", TERMS, revenue=Decimal("142.65")) == Decimal("14.27")  # half up


# --- fee schedules ----------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("bad", ["-0.1", "1.0001", "abc", "0.12345", 0.1])
def test_fee_schedule_refuses_a_bad_revshare_rate(bad: object) -> None:
    with pytest.raises(FeeScheduleError) as exc:
        create_fee_schedule(
            partner=PartnerFactory(),
            effective_from=timezone.now() - timedelta(days=30),
            terms=FeeTerms(revshare_rate=bad),  # type: ignore[arg-type]  # untyped input
        )
    assert exc.value.field == "revshare_rate"


@pytest.mark.django_db
def test_fee_schedule_takes_a_revshare_rate_as_a_decimal_string() -> None:
    made = create_fee_schedule(
        partner=PartnerFactory(),
        effective_from=timezone.now() - timedelta(days=30),
        terms=FeeTerms(revshare_rate="0.125"),  # type: ignore[arg-type]  # parsed like a form's
    )
    made.refresh_from_db()
    assert made.revshare_rate == Decimal("0.1250")


# --- charging ---------------------------------------------------------------------------


def funded(leads: LeadBuilder, *, rate: str = "0.1000", sandbox: bool = False) -> Lead:
    lead = leads.lead(is_sandbox=sandbox, delivered_at=timezone.now() - timedelta(days=75))
    schedule(lead.partner, revshare_rate=Decimal(rate))
    at = timezone.now() - timedelta(days=70)
    for event_type in ["accepted", "approved", "funded"]:
        post(lead, report(event_type, at, external_id=f"{lead.id}-{event_type}"))
    return lead


def revenue(lead: Lead, amount: str, period: str, *, event_id: str = "") -> None:
    post(
        lead,
        report(
            "revenue",
            timezone.now() - timedelta(hours=1),
            external_id=event_id or f"{lead.id}-rev-{period}",
            amount=Decimal(amount),
            period=period,
        ),
    )


def months_back(n: int) -> str:
    at = timezone.now().replace(day=1)
    for _ in range(n):
        at = (at - timedelta(days=1)).replace(day=1)
    return f"{at:%Y-%m}"


def test_revenue_through_the_api_is_charged_and_invoiced(leads: LeadBuilder) -> None:
    lead = funded(leads)
    client = partner_client(lead.partner)

    response = client.post(
        f"/api/v1/partner/leads/{lead.id}/events",
        {
            "event_id": "loan-1-revenue",
            "type": "revenue",
            "occurred_at": (timezone.now() - timedelta(hours=1)).isoformat(),
            "amount": "1234.56",
            "period": months_back(1),
        },
        format="json",
    )

    assert response.status_code == 201, response.content
    assert response.json()["period"] == months_back(1)
    charge = Charge.objects.get(lead=lead, kind=FeeKind.REVSHARE)
    assert (charge.entry_type, charge.amount) == (EntryType.CHARGE, Decimal("123.46"))
    lead.refresh_from_db()
    assert lead.status == LeadStatus.FUNDED

    (invoice,) = invoice_partner(partner_id=lead.partner_id, period=current_period())
    line = invoice.lines.get(kind=FeeKind.REVSHARE)
    assert (line.quantity, line.amount) == (1, Decimal("123.46"))
    assert "Revenue share" in line.description
    assert ("Revenue share", Decimal("123.46")) in context(invoice)["by_kind"]
    assert reconcile(period=current_period()).ok


def test_each_period_makes_its_own_charge(leads: LeadBuilder) -> None:
    lead = funded(leads, rate="0.2000")

    revenue(lead, "100.00", months_back(1))
    again = report(
        "revenue",
        timezone.now() - timedelta(hours=1),
        external_id="rev-now",
        amount=Decimal("250.05"),
        period=months_back(0),
    )
    assert post(lead, again)[1] is True
    assert post(lead, again)[1] is False  # the same event again: a no-op

    assert [c for c in ledger(lead) if c[0] == "revshare"] == [
        ("revshare", "charge", Decimal("20.00")),
        ("revshare", "charge", Decimal("50.01")),
    ]
    (invoice,) = invoice_partner(partner_id=lead.partner_id, period=current_period())
    line = invoice.lines.get(kind=FeeKind.REVSHARE)
    assert (line.quantity, line.amount) == (2, Decimal("70.01"))
    assert reconcile(period=current_period()).ok


def test_a_second_revenue_for_one_period_is_refused(leads: LeadBuilder) -> None:
    lead = funded(leads)
    revenue(lead, "100.00", months_back(1))

    with pytest.raises(EventError) as exc:
        revenue(lead, "90.00", months_back(1), event_id="another-id")

    assert exc.value.code == "duplicate_revenue_period"
    assert Charge.objects.filter(lead=lead, kind="revshare").count() == 1


def test_revenue_on_an_unfunded_lead_is_refused(leads: LeadBuilder) -> None:
    lead = leads.billed_lead()
    post(lead, report("approved", timezone.now() - timedelta(hours=2)))

    with pytest.raises(EventError) as exc:
        revenue(lead, "100.00", months_back(0))

    assert exc.value.code == "lead_not_funded"
    assert not Charge.objects.filter(kind="revshare").exists()


def test_reversing_revenue_reverses_its_charge_only(leads: LeadBuilder) -> None:
    lead = funded(leads)
    revenue(lead, "100.00", months_back(1), event_id="rev-1")
    revenue(lead, "300.00", months_back(0), event_id="rev-2")

    post(
        lead,
        report(
            "reversal", timezone.now() - timedelta(minutes=5), external_id="x", reverses="rev-1"
        ),
    )
    revenue(lead, "110.00", months_back(1), event_id="rev-1-corrected")

    rows = [c for c in ledger(lead) if c[0] == "revshare"]
    assert rows == [
        ("revshare", "charge", Decimal("10.00")),
        ("revshare", "charge", Decimal("11.00")),
        ("revshare", "charge", Decimal("30.00")),
        ("revshare", "reversal", Decimal("-10.00")),
    ]
    reversal = Charge.objects.get(lead=lead, entry_type=EntryType.REVERSAL)
    assert reversal.corrects is not None and reversal.corrects.event.external_id == "rev-1"
    assert reconcile(period=current_period()).ok


def test_a_revshare_charge_is_corrected_at_most_once(leads: LeadBuilder) -> None:
    lead = funded(leads)
    revenue(lead, "100.00", months_back(0), event_id="rev-1")
    charge = Charge.objects.get(lead=lead, kind="revshare")

    post(lead, report("reversal", timezone.now(), external_id="x", reverses="rev-1"))
    with pytest.raises(IntegrityError), transaction.atomic():
        Charge.objects.create(
            partner_id=charge.partner_id,
            lead=lead,
            product_id=charge.product_id,
            event=charge.event,
            kind="revshare",
            entry_type=EntryType.CREDIT,
            amount=-charge.amount,
            currency=charge.currency,
            occurred_at=charge.occurred_at,
            corrects=charge,
            period=charge.period,
        )


def test_a_return_credits_revenue_share_like_every_charge(leads: LeadBuilder) -> None:
    lead = leads.lead()
    schedule(lead.partner, revshare_rate=Decimal("0.1000"))
    at = timezone.now() - timedelta(days=2)
    for event_type in ["accepted", "approved", "funded"]:
        post(lead, report(event_type, at))
    revenue(lead, "100.00", months_back(0))
    post(lead, report("returned", timezone.now() - timedelta(minutes=30)))

    rows = Charge.objects.filter(lead=lead, kind="revshare")
    assert sorted(r.amount for r in rows) == [Decimal("-10.00"), Decimal("10.00")]
    assert sum(c.amount for c in Charge.objects.filter(lead=lead)) == 0


def test_sandbox_revenue_is_never_charged(leads: LeadBuilder) -> None:
    lead = funded(leads, sandbox=True)
    revenue(lead, "100.00", months_back(0))

    assert not Charge.objects.filter(lead=lead).exists()
    assert reconcile(period=current_period()).ok


def test_charges_by_other_kinds_stay_once_per_lead(leads: LeadBuilder) -> None:
    lead = funded(leads)
    charge = Charge.objects.get(lead=lead, kind="cpf")

    with pytest.raises(IntegrityError), transaction.atomic():
        Charge.objects.create(
            partner_id=charge.partner_id,
            lead=lead,
            product_id=charge.product_id,
            event=charge.event,
            kind="cpf",
            entry_type=EntryType.CHARGE,
            amount=charge.amount,
            currency=charge.currency,
            occurred_at=charge.occurred_at,
            period=charge.period,
        )


# --- order independence ------------------------------------------------------------------

EVENTS = ["accepted", "approved", "funded", "rev-a", "rev-b", "rev-a-reversal"]


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(order=st.permutations(EVENTS))
def test_the_ledger_does_not_depend_on_the_arrival_order(
    leads: LeadBuilder, order: list[str]
) -> None:
    """Events arrive in any order; a partner retries those refused for now (revenue before
    the funding, a reversal before its event) until all are stored. The ledger is the same."""
    lead = leads.lead(delivered_at=timezone.now() - timedelta(days=70))
    schedule(lead.partner, revshare_rate=Decimal("0.1500"))
    base = timezone.now() - timedelta(days=60)
    reports = {
        "accepted": report("accepted", base, external_id=f"{lead.id}-acc"),
        "approved": report("approved", base, external_id=f"{lead.id}-app"),
        "funded": report("funded", base, external_id=f"{lead.id}-fund"),
        "rev-a": report(
            "revenue",
            timezone.now() - timedelta(hours=2),
            external_id=f"{lead.id}-rev-a",
            amount=Decimal("333.33"),
            period=months_back(1),
        ),
        "rev-b": report(
            "revenue",
            timezone.now() - timedelta(hours=1),
            external_id=f"{lead.id}-rev-b",
            amount=Decimal("1000.01"),
        ),
        "rev-a-reversal": report(
            "reversal",
            timezone.now() - timedelta(minutes=30),
            external_id=f"{lead.id}-rev-a-x",
            reverses=f"{lead.id}-rev-a",
        ),
    }
    pending = list(order)
    for _ in itertools.count():
        refused = []
        for name in pending:
            try:
                post(lead, reports[name])
            except EventError:
                refused.append(name)
        if not refused:
            break
        assert len(refused) < len(pending), f"stuck on {refused}"
        pending = refused

    assert ledger(lead) == [
        ("cpa", "charge", Decimal("250.00")),
        ("cpf", "charge", Decimal("450.00")),
        ("cpl", "charge", Decimal("40.00")),
        ("revshare", "charge", Decimal("50.00")),
        ("revshare", "charge", Decimal("150.00")),
        ("revshare", "reversal", Decimal("-50.00")),
    ]
