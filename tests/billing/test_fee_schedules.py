"""Fee schedules: validated, versioned, never overlapping; tiers, bids; pure pricing."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.utils import timezone
from hypothesis import given
from hypothesis import strategies as st

from billing.fees import FeeScheduleError, create_fee_schedule
from billing.invoicing import Period, invoice_partner
from billing.pricing import FeeTerms, Tier, month_total, price
from tests.billing.builders import LeadBuilder, ledger, post, report
from tests.factories import PartnerFactory, ProductFactory

pytestmark = pytest.mark.django_db
TERMS = FeeTerms(Decimal("40"), Decimal("250"), Decimal("0.03"), Decimal("50"), Decimal("2000"))


def test_an_overlapping_schedule_is_refused_naming_both() -> None:
    partner = PartnerFactory(name="Acme Lending")
    start = timezone.now() - timedelta(days=30)
    first = create_fee_schedule(
        partner=partner, effective_from=start, terms=FeeTerms(cpl=Decimal("40"))
    )

    with pytest.raises(FeeScheduleError) as refused:
        create_fee_schedule(
            partner=partner,
            effective_from=start + timedelta(days=1),
            terms=FeeTerms(cpl=Decimal("50")),
        )

    message = str(refused.value)
    assert f"schedule #{first.pk} v1" in message
    assert "Acme Lending (all products)" in message and "overlaps" in message


def test_a_product_schedule_may_overlap_the_partner_wide_one() -> None:
    product = ProductFactory()
    start = timezone.now() - timedelta(days=30)
    create_fee_schedule(partner=product.partner, effective_from=start)

    own = create_fee_schedule(partner=product.partner, product=product, effective_from=start)

    assert own.version == 1


def test_close_previous_makes_the_next_version() -> None:
    partner = PartnerFactory()
    start = timezone.now() - timedelta(days=30)
    first = create_fee_schedule(
        partner=partner, effective_from=start, terms=FeeTerms(cpl=Decimal("40"))
    )
    switch = start + timedelta(days=10)

    second = create_fee_schedule(
        partner=partner,
        effective_from=switch,
        terms=FeeTerms(cpl=Decimal("45")),
        close_previous=True,
    )

    first.refresh_from_db()
    assert (first.effective_to, second.version, second.cpl) == (switch, 2, Decimal("45"))


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"cpl": "-1"}, "cpl"),
        ({"cpa": "ten"}, "cpa"),
        ({"cpl": 0.1}, "cpl"),
        ({"cpl": "NaN"}, "cpl"),
        ({"cpf_rate": "1.5"}, "cpf_rate"),
        ({"cpf_min": "100", "cpf_max": "50"}, "cpf_max"),
        ({"currency": "XYZ"}, "currency"),
        ({"cpl": "1.234"}, "cpl"),
    ],
)
def test_bad_fees_are_clear_errors(fields: dict[str, object], field: str) -> None:
    currency = fields.get("currency")
    fees = {name: value for name, value in fields.items() if name != "currency"}
    terms = FeeTerms(**fees)  # type: ignore[arg-type]  # untyped input, checked at runtime
    with pytest.raises(FeeScheduleError) as refused:
        create_fee_schedule(
            partner=PartnerFactory(),
            effective_from=timezone.now(),
            currency=currency,  # type: ignore[arg-type]
            terms=terms,
        )
    assert refused.value.field == field


def test_tiers_are_marginal() -> None:
    terms = FeeTerms(
        Decimal("40"),
        Decimal("250"),
        Decimal("0.03"),
        Decimal("0"),
        None,
        (Tier(2, cpl=Decimal("30")), Tier(4, cpl=Decimal("20"))),
    )

    prices = [price("cpl", terms, unit=n) for n in range(1, 7)]

    assert prices == [Decimal("40.00")] * 2 + [Decimal("30.00")] * 2 + [Decimal("20.00")] * 2


def test_a_bid_is_the_cpl_of_an_auction_lead() -> None:
    assert price("cpl", TERMS, bid=Decimal("66.50"), unit=500) == Decimal("66.50")
    assert price("cpa", TERMS, bid=Decimal("66.50")) == Decimal("250.00")


@given(
    units=st.integers(min_value=0, max_value=60),
    thresholds=st.lists(st.integers(1, 50), max_size=3, unique=True),
    order=st.randoms(use_true_random=False),
)
def test_a_months_tiered_total_does_not_depend_on_arrival_order(
    units: int, thresholds: list[int], order: object
) -> None:
    tiers = tuple(Tier(t, cpl=Decimal(40 - 5 * i)) for i, t in enumerate(sorted(thresholds)))
    terms = FeeTerms(Decimal("40"), Decimal("0"), Decimal("0"), Decimal("0"), None, tiers)
    arrivals = list(range(units))
    order.shuffle(arrivals)  # type: ignore[attr-defined]
    # Whatever lead arrives n-th is priced as the n-th unit: the month's total is the same.
    total = sum((price("cpl", terms, unit=n + 1) for n, _ in enumerate(arrivals)), Decimal(0))
    assert total == month_total("cpl", terms, units)


def test_tiered_schedule_prices_later_units_of_the_month_lower(leads: LeadBuilder) -> None:
    product = ProductFactory()
    create_fee_schedule(
        partner=product.partner,
        effective_from=timezone.now() - timedelta(days=400),
        terms=FeeTerms(cpl=Decimal("40"), tiers=(Tier(1, cpl=Decimal("25")),)),
    )
    first, second = leads.lead(product=product), leads.lead(product=product)
    at = timezone.now() - timedelta(hours=1)

    post(first, report("accepted", at, external_id="a-1"))
    post(second, report("accepted", at + timedelta(minutes=1), external_id="a-2"))

    assert ledger(first) == [("cpl", "charge", Decimal("40.00"))]
    assert ledger(second) == [("cpl", "charge", Decimal("25.00"))]


def test_units_are_numbered_by_event_time_whatever_order_they_arrive_in(
    leads: LeadBuilder,
) -> None:
    product = ProductFactory()
    create_fee_schedule(
        partner=product.partner,
        effective_from=timezone.now() - timedelta(days=400),
        terms=FeeTerms(cpl=Decimal("40"), tiers=(Tier(1, cpl=Decimal("25")),)),
    )
    early, late, tied = (leads.lead(product=product) for _ in range(3))
    at = timezone.now() - timedelta(hours=2)
    # Arrival order: late, then tied, then early; event order: early, late/tied (id order).
    post(late, report("accepted", at + timedelta(minutes=5), external_id="b"))
    post(tied, report("accepted", at + timedelta(minutes=5), external_id="c"))
    post(early, report("accepted", at, external_id="z"))

    invoice_partner(partner_id=product.partner_id, period=Period(at.date().replace(day=1)))

    def net(lead: object) -> Decimal:
        return sum((amount for _, _, amount in ledger(lead)), Decimal(0))

    # Unit 1 (the earliest) costs 40, every later one 25: the late arrival renumbered
    # "b", whose 40 was repriced to 25 when the month was invoiced.
    assert (net(early), net(late), net(tied)) == (Decimal("40.00"), Decimal("25.00"), Decimal("25"))
    assert ledger(late) == [
        ("cpl", "charge", Decimal("25.00")),
        ("cpl", "charge", Decimal("40.00")),
        ("cpl", "reprice", Decimal("-40.00")),
    ]


def test_an_auction_lead_is_charged_its_bid(leads: LeadBuilder) -> None:
    lead = leads.billed_lead()
    lead.bid_amount, lead.bid_currency = Decimal("72.00"), "CNY"
    lead.save(update_fields=["bid_amount", "bid_currency"])

    post(lead, report("accepted", timezone.now() - timedelta(hours=1)))

    assert ledger(lead) == [("cpl", "charge", Decimal("72.00"))]


def test_a_unit_reported_out_of_time_order_reprices_the_month_after_commit(
    leads: LeadBuilder, django_capture_on_commit_callbacks: Any
) -> None:
    product = ProductFactory()
    create_fee_schedule(
        partner=product.partner,
        effective_from=timezone.now() - timedelta(days=400),
        terms=FeeTerms(cpl=Decimal("40"), tiers=(Tier(1, cpl=Decimal("25")),)),
    )
    first, second = leads.lead(product=product), leads.lead(product=product)
    at = timezone.now() - timedelta(hours=2)
    post(second, report("accepted", at + timedelta(minutes=5), external_id="later"))
    assert ledger(second) == [("cpl", "charge", Decimal("40.00"))]  # unit 1 for now

    with django_capture_on_commit_callbacks(execute=True):
        post(first, report("accepted", at, external_id="earlier"))

    # The earlier event is unit 1 (40); "later" became unit 2 and was repriced to 25 by the
    # billing task queued when the earlier one was stored, without waiting for invoicing.
    assert ledger(first) == [("cpl", "charge", Decimal("40.00"))]
    assert sorted(ledger(second)) == [
        ("cpl", "charge", Decimal("25.00")),
        ("cpl", "charge", Decimal("40.00")),
        ("cpl", "reprice", Decimal("-40.00")),
    ]


def test_a_unit_reported_out_of_time_order_queues_no_repricing_in_a_month_without_tiers(
    leads: LeadBuilder,
) -> None:
    from marketplace.models import OutboxMessage

    product = ProductFactory()
    create_fee_schedule(
        partner=product.partner,
        effective_from=timezone.now() - timedelta(days=400),
        terms=FeeTerms(cpl=Decimal("40")),
    )
    first, second = leads.lead(product=product), leads.lead(product=product)
    at = timezone.now() - timedelta(hours=2)
    post(second, report("accepted", at + timedelta(minutes=5), external_id="later"))

    post(first, report("accepted", at, external_id="earlier"))

    # Renumbered, but every unit of the month costs the same: nothing to reprice.
    assert not OutboxMessage.objects.filter(task="billing.tasks.retier_month").exists()
    assert ledger(first) == ledger(second) == [("cpl", "charge", Decimal("40.00"))]


def test_a_unit_reported_out_of_time_order_queues_repricing_when_tiers_start_later_that_month(
    leads: LeadBuilder,
) -> None:
    from marketplace.models import OutboxMessage

    product = ProductFactory()
    this_month = timezone.now().replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    start = (this_month - timedelta(days=1)).replace(day=15)  # mid last month
    create_fee_schedule(
        partner=product.partner,
        effective_from=start - timedelta(days=400),
        effective_to=start,
        terms=FeeTerms(cpl=Decimal("40")),
    )
    create_fee_schedule(
        partner=product.partner,
        effective_from=start,
        terms=FeeTerms(cpl=Decimal("40"), tiers=(Tier(1, cpl=Decimal("25")),)),
    )
    first, second = (
        leads.lead(product=product, delivered_at=start - timedelta(days=1)) for _ in range(2)
    )
    at = start - timedelta(minutes=30)  # both under the untiered schedule
    post(second, report("accepted", at + timedelta(minutes=5), external_id="later"))

    post(first, report("accepted", at, external_id="earlier"))

    # The month's later units are priced by tiers: the renumbering is re-tiered.
    assert OutboxMessage.objects.filter(task="billing.tasks.retier_month").count() == 1


def test_a_late_unit_without_a_fee_renumbers_an_invoiced_month_at_the_next_invoicing(
    leads: LeadBuilder,
) -> None:
    from billing.invoicing import issue_invoice
    from billing.models import CreditNote, Invoice

    product = ProductFactory()
    this_month = timezone.now().replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    last_month = (this_month - timedelta(days=1)).replace(day=1)
    create_fee_schedule(
        partner=product.partner,
        effective_from=last_month + timedelta(days=9),
        terms=FeeTerms(cpa=Decimal("150"), tiers=(Tier(1, cpa=Decimal("100")),)),
    )
    charged = leads.lead(product=product, delivered_at=last_month + timedelta(days=1))
    uncharged = leads.lead(product=product, delivered_at=last_month + timedelta(days=1))
    post(charged, report("approved", last_month + timedelta(days=14), external_id="paid"))
    assert ledger(charged) == [("cpa", "charge", Decimal("150.00"))]  # unit 1 so far
    (november,) = invoice_partner(partner_id=product.partner_id, period=Period(last_month.date()))
    issue_invoice(invoice_id=november.pk)

    # Dated before the schedule: no fee of its own, but it is unit 1 of that month now.
    post(uncharged, report("approved", last_month + timedelta(days=4), external_id="early"))
    assert ledger(uncharged) == []
    (december,) = invoice_partner(partner_id=product.partner_id, period=Period(this_month.date()))

    assert sum((amount for _, _, amount in ledger(charged)), Decimal(0)) == Decimal("100.00")
    note = CreditNote.objects.get(invoice=november)
    assert note.subtotal == Decimal("150.00")  # the invoiced 150 taken back ...
    assert Invoice.objects.get(pk=december.pk).subtotal == Decimal("100.00")  # ... 100 billed
