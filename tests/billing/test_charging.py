"""Partner events become ledger entries exactly once, through the real event path."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta
from decimal import Decimal
from functools import partial
from typing import Any

import pytest
from django.db.models import Sum
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from billing import catchup
from billing.charging import charge_unbilled_events
from billing.models import Charge, EntryType, FeeKind
from marketplace.events import EventError
from marketplace.models import LeadEvent
from tests.billing.builders import (
    LeadBuilder,
    ledger,
    post,
    report,
    schedule,
)
from tests.concurrency import run_concurrently
from tests.factories import ProductFactory

CPL, CPA = Decimal("40.00"), Decimal("250.00")
# Default report: funded principal 15000 at 3% = 450.
CPF = Decimal("450.00")
FULL_REFUND = [
    ("cpa", "charge", CPA),
    ("cpa", "credit", -CPA),
    ("cpf", "charge", CPF),
    ("cpf", "credit", -CPF),
    ("cpl", "charge", CPL),
    ("cpl", "credit", -CPL),
]

db_examples = settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def an_hour_ago() -> datetime:
    return timezone.now() - timedelta(hours=1)


def test_an_accepted_event_makes_one_cpl_charge(leads: LeadBuilder) -> None:
    lead = leads.billed_lead()
    at = an_hour_ago()

    event, created = post(lead, report("accepted", at))

    charge = Charge.objects.get(lead=lead)
    assert created
    assert (charge.kind, charge.entry_type, charge.amount) == ("cpl", "charge", CPL)
    assert charge.event == event
    assert charge.partner_id == lead.partner_id
    assert charge.product_id == lead.product_id
    assert charge.currency == "CNY"
    assert charge.occurred_at == at
    assert charge.period == at.date().replace(day=1)
    assert charge.credit_note is None


def test_an_approved_event_makes_one_cpa_charge(leads: LeadBuilder) -> None:
    lead = leads.billed_lead()

    post(lead, report("approved", an_hour_ago()))

    assert ledger(lead) == [("cpa", "charge", CPA)]


def test_a_funded_event_makes_a_cpf_charge_on_the_principal(leads: LeadBuilder) -> None:
    lead = leads.billed_lead()

    post(lead, report("funded", an_hour_ago(), principal=Decimal("12345.67")))

    # 12345.67 * 0.03 = 370.3701
    assert ledger(lead) == [("cpf", "charge", Decimal("370.37"))]


def test_a_rejected_event_makes_no_charge(leads: LeadBuilder) -> None:
    lead = leads.billed_lead()

    post(lead, report("rejected", an_hour_ago()))

    assert ledger(lead) == []


def test_the_same_event_id_reported_twice_makes_one_charge(leads: LeadBuilder) -> None:
    lead = leads.billed_lead()
    accepted = report("accepted", an_hour_ago(), external_id="partner-evt-1")

    first, first_created = post(lead, accepted)
    again, again_created = post(lead, accepted)

    assert (first_created, again_created) == (True, False)
    assert again.pk == first.pk
    assert ledger(lead) == [("cpl", "charge", CPL)]


def test_sandbox_leads_are_never_charged(leads: LeadBuilder) -> None:
    lead = leads.billed_lead(is_sandbox=True)
    at = an_hour_ago()

    for event_type in ["accepted", "approved", "funded", "returned"]:
        post(lead, report(event_type, at))

    assert lead.events.count() == 4
    assert ledger(lead) == []
    assert charge_unbilled_events() == 0
    assert ledger(lead) == []


def test_the_schedule_in_force_at_the_events_time_prices_it(leads: LeadBuilder) -> None:
    product = ProductFactory()
    switch = timezone.now() - timedelta(days=2)
    schedule(product.partner, cpl=Decimal("40.00"), effective_to=switch)
    schedule(product.partner, cpl=Decimal("60.00"), effective_from=switch)
    before, at_switch, after = (leads.lead(product=product) for _ in range(3))

    post(before, report("accepted", switch - timedelta(seconds=1)))
    post(at_switch, report("accepted", switch))
    post(after, report("accepted", switch + timedelta(hours=1)))

    assert ledger(before) == [("cpl", "charge", Decimal("40.00"))]
    # effective_to is exclusive: at the switch the new schedule already applies.
    assert ledger(at_switch) == [("cpl", "charge", Decimal("60.00"))]
    assert ledger(after) == [("cpl", "charge", Decimal("60.00"))]


def test_an_event_reported_late_is_priced_by_the_schedule_of_its_time(
    leads: LeadBuilder,
) -> None:
    # The new schedule exists when the event arrives; the event happened before it began.
    product = ProductFactory()
    switch = timezone.now() - timedelta(days=1)
    schedule(product.partner, cpl=Decimal("40.00"), effective_to=switch)
    schedule(product.partner, cpl=Decimal("60.00"), effective_from=switch)
    lead = leads.lead(product=product)

    post(lead, report("accepted", switch - timedelta(days=1)))

    assert ledger(lead) == [("cpl", "charge", Decimal("40.00"))]


def test_a_product_schedule_beats_the_partner_wide_one(leads: LeadBuilder) -> None:
    own = ProductFactory(name="Instalment loan")
    other = ProductFactory(partner=own.partner, name="Cash loan")
    schedule(own.partner, cpl=Decimal("40.00"))
    # Older than the partner-wide schedule, and still preferred: it is the product's own.
    schedule(
        own.partner,
        product=own,
        cpl=Decimal("70.00"),
        effective_from=timezone.now() - timedelta(days=400),
    )
    own_lead, other_lead = leads.lead(product=own), leads.lead(product=other)

    post(own_lead, report("accepted", an_hour_ago()))
    post(other_lead, report("accepted", an_hour_ago()))

    assert ledger(own_lead) == [("cpl", "charge", Decimal("70.00"))]
    assert ledger(other_lead) == [("cpl", "charge", Decimal("40.00"))]


def test_an_event_without_a_schedule_in_force_is_not_charged(leads: LeadBuilder) -> None:
    lead = leads.lead()
    schedule(lead.partner, effective_from=timezone.now() - timedelta(hours=1))

    post(lead, report("accepted", timezone.now() - timedelta(hours=2)))

    assert ledger(lead) == []


def test_a_return_credits_every_charge_with_an_equal_negative_entry(leads: LeadBuilder) -> None:
    lead = leads.billed_lead()
    start = lead.delivered_at
    for offset, event_type in enumerate(["accepted", "approved", "funded"], start=1):
        post(lead, report(event_type, start + timedelta(hours=offset)))
    returned_at = start + timedelta(days=1)

    returned, _ = post(lead, report("returned", returned_at))

    assert ledger(lead) == FULL_REFUND
    credits = Charge.objects.filter(lead=lead, entry_type=EntryType.CREDIT)
    assert {c.event_id for c in credits} == {returned.pk}
    assert {c.occurred_at for c in credits} == {returned_at}


def test_a_fee_due_on_a_lead_already_returned_is_never_charged(leads: LeadBuilder) -> None:
    lead = leads.billed_lead()
    start = lead.delivered_at
    post(lead, report("accepted", start + timedelta(hours=1)))
    post(lead, report("returned", start + timedelta(days=1)))

    post(lead, report("approved", start + timedelta(hours=2)))

    # The approval's fee is not due (the lead stands returned): nothing to book or credit.
    assert ledger(lead) == [("cpl", "charge", CPL), ("cpl", "credit", -CPL)]


def test_a_second_return_credits_nothing_more(leads: LeadBuilder) -> None:
    lead = leads.billed_lead()
    start = lead.delivered_at
    post(lead, report("accepted", start + timedelta(hours=1)))
    post(lead, report("returned", start + timedelta(days=1)))

    post(lead, report("returned", start + timedelta(days=2)))

    assert ledger(lead) == [("cpl", "charge", CPL), ("cpl", "credit", -CPL)]


@db_examples
@given(order=st.permutations(["accepted", "approved", "funded", "returned"]))
def test_the_ledger_does_not_depend_on_the_order_events_arrive_in(
    leads: LeadBuilder, order: list[str]
) -> None:
    lead = leads.billed_lead()
    # Fixed event times; the amounts (approved 20000 >= funded 15000) make every order valid.
    occurred = {
        event_type: lead.delivered_at + timedelta(hours=hours)
        for event_type, hours in [("accepted", 1), ("approved", 2), ("funded", 3), ("returned", 4)]
    }

    for event_type in order:
        post(lead, report(event_type, occurred[event_type]))

    # Fees that arrive after the return are never booked; those booked before are
    # credited in full: every order nets to nothing, and each chain is charge, credit.
    net: dict[str, Decimal] = {}
    for kind, _, amount in ledger(lead):
        net[kind] = net.get(kind, Decimal(0)) + amount
    assert set(net.values()) <= {Decimal("0.00")}
    assert [e for e in ledger(lead) if e[1] == "credit"] == [
        (kind, "credit", -amount) for kind, entry, amount in ledger(lead) if entry == "charge"
    ]
    credit_times = Charge.objects.filter(lead=lead, entry_type=EntryType.CREDIT).values_list(
        "occurred_at", flat=True
    )
    assert set(credit_times) <= {occurred["returned"]}


@db_examples
@given(
    events=st.lists(
        st.sampled_from(["accepted", "approved", "funded", "returned", "returned-again"]),
        unique=True,
    )
)
def test_credits_on_a_lead_never_exceed_its_charges(leads: LeadBuilder, events: list[str]) -> None:
    lead = leads.billed_lead()

    for hours, name in enumerate(events, start=1):
        post(lead, report(name.removesuffix("-again"), lead.delivered_at + timedelta(hours=hours)))

    entries = Charge.objects.filter(lead=lead)
    assert (entries.aggregate(total=Sum("amount"))["total"] or 0) >= 0
    for kind in FeeKind.values:
        charged = entries.filter(kind=kind, entry_type=EntryType.CHARGE)
        credited = entries.filter(kind=kind, entry_type=EntryType.CREDIT)
        assert credited.count() <= charged.count() <= 1
        if credited.exists():
            assert credited.get().amount == -charged.get().amount
    if "returned" in events or "returned-again" in events:
        assert entries.aggregate(total=Sum("amount"))["total"] in (None, 0)


def test_catch_up_charges_an_event_whose_schedule_was_added_later(leads: LeadBuilder) -> None:
    lead = leads.lead()
    post(lead, report("accepted", lead.delivered_at + timedelta(hours=1)))
    assert ledger(lead) == []
    schedule(lead.partner)

    made = charge_unbilled_events()

    assert made == 1
    assert ledger(lead) == [("cpl", "charge", CPL)]


def test_catch_up_books_nothing_for_a_lead_returned_before_its_schedule_came(
    leads: LeadBuilder,
) -> None:
    lead = leads.lead()
    post(lead, report("accepted", lead.delivered_at + timedelta(hours=1)))
    post(lead, report("returned", lead.delivered_at + timedelta(hours=2)))
    schedule(lead.partner)

    assert charge_unbilled_events() == 0
    assert ledger(lead) == []


def test_catch_up_run_twice_changes_nothing(leads: LeadBuilder) -> None:
    lead = leads.lead()
    post(lead, report("accepted", lead.delivered_at + timedelta(hours=1)))
    post(lead, report("funded", lead.delivered_at + timedelta(hours=2)))
    schedule(lead.partner)
    assert charge_unbilled_events() == 2
    before = list(Charge.objects.order_by("id").values_list("id", "amount"))

    made = charge_unbilled_events()

    assert made == 0
    assert list(Charge.objects.order_by("id").values_list("id", "amount")) == before


# --- PostgreSQL: real concurrent requests --------------------------------------------------


@pytest.mark.postgres
def test_a_storm_of_the_same_event_stores_one_event_and_one_charge(
    transactional_db: None, leads: LeadBuilder
) -> None:
    lead = leads.billed_lead()
    accepted = report("accepted", an_hour_ago(), external_id="storm-1")

    results = run_concurrently(*[lambda: post(lead, accepted)] * 8)

    assert not [r for r in results if isinstance(r, Exception)]
    assert {event.pk for event, _ in results} == {LeadEvent.objects.get(lead=lead).pk}
    assert sum(created for _, created in results) == 1
    assert ledger(lead) == [("cpl", "charge", CPL)]


@pytest.mark.postgres
def test_concurrent_events_of_one_type_with_different_ids_make_one_charge(
    transactional_db: None, leads: LeadBuilder
) -> None:
    lead = leads.billed_lead()
    at = an_hour_ago()

    results = run_concurrently(
        *(partial(post, lead, report("accepted", at, external_id=f"accept-{i}")) for i in range(8))
    )

    refused = [r for r in results if isinstance(r, EventError)]
    assert len(refused) == 7
    assert {r.code for r in refused} == {"duplicate_event_type"}
    assert lead.events.count() == 1
    assert ledger(lead) == [("cpl", "charge", CPL)]


@pytest.mark.postgres
def test_a_return_reported_during_a_catch_up_run_still_credits_the_late_charge(
    transactional_db: None, leads: LeadBuilder, monkeypatch: pytest.MonkeyPatch
) -> None:
    lead = leads.lead()
    post(lead, report("accepted", lead.delivered_at + timedelta(hours=1)))
    schedule(lead.partner)  # added late: the catch-up run makes the CPL charge
    charged, returned = threading.Event(), threading.Event()
    settle_now = catchup.settle_leads

    def charge_then_hold_the_transaction(lead_ids: list[Any], **options: Any) -> list[Charge]:
        made = settle_now(lead_ids, **options)
        charged.set()
        returned.wait(timeout=1)  # blocked on the lead's lock, the return never comes
        return made

    monkeypatch.setattr(catchup, "settle_leads", charge_then_hold_the_transaction)

    def catch_up_or_return(worker: int) -> object:
        if worker == 0:
            return charge_unbilled_events()
        assert charged.wait(timeout=10)
        post(lead, report("returned", lead.delivered_at + timedelta(hours=2)))
        returned.set()
        return None

    results = run_concurrently(partial(catch_up_or_return, 0), partial(catch_up_or_return, 1))

    assert results == [1, None]
    assert ledger(lead) == [("cpl", "charge", CPL), ("cpl", "credit", -CPL)]
