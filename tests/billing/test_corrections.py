"""Reversals, returns with reason codes, return-rate caps and finance's review."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from itertools import permutations

import pytest
from django.utils import timezone

from billing.charging import decide_return
from billing.models import Charge, PartnerBillingProfile, ReturnReview, ReviewStatus
from tests.billing.builders import LeadBuilder, ledger, post, report, schedule
from tests.factories import PartnerFactory, ProductFactory

CPL, CPA, CPF = Decimal("40.00"), Decimal("250.00"), Decimal("450.00")


def ago(hours: float = 1) -> timezone.datetime:
    return timezone.now() - timedelta(hours=hours)


def test_a_reversal_books_the_negative_of_the_reversed_events_charge(leads: LeadBuilder) -> None:
    lead = leads.billed_lead()
    post(lead, report("accepted", ago(3)))
    post(lead, report("funded", ago(2), external_id="loan-1-funded"))

    post(lead, report("reversal", ago(1), reverses="loan-1-funded"))

    assert ledger(lead) == [
        ("cpf", "charge", CPF),
        ("cpf", "reversal", -CPF),
        ("cpl", "charge", CPL),
    ]
    reversal = Charge.objects.get(lead=lead, entry_type="reversal")
    assert reversal.corrects == Charge.objects.get(lead=lead, kind="cpf", entry_type="charge")


def test_a_return_credits_with_its_reason_code(leads: LeadBuilder) -> None:
    lead = leads.billed_lead()
    post(lead, report("accepted", ago(2)))

    post(lead, report("returned", ago(1), reason="invalid_contact"))

    credit = Charge.objects.get(lead=lead, entry_type="credit")
    assert (credit.amount, credit.reason) == (-CPL, "invalid_contact")


def test_an_unknown_reason_code_waits_for_review(leads: LeadBuilder) -> None:
    lead = leads.billed_lead()
    post(lead, report("accepted", ago(2)))

    post(lead, report("returned", ago(1), reason="fraud"))

    review = ReturnReview.objects.get(lead=lead)
    assert review.status == ReviewStatus.PENDING and "unknown reason code" in review.why
    assert ledger(lead) == [("cpl", "charge", CPL)]


def test_returns_above_the_cap_wait_and_are_credited_only_on_approval(leads: LeadBuilder) -> None:
    product = ProductFactory()
    schedule(product.partner)
    PartnerBillingProfile.objects.create(partner=product.partner, return_rate_cap=Decimal("0.05"))
    batch = [leads.lead(product=product) for _ in range(20)]
    for lead in batch:
        post(lead, report("accepted", ago(5)))
    post(batch[0], report("returned", ago(2)))  # 1 of 20 = 5%: at the cap, credited
    post(batch[1], report("returned", ago(1)))  # 2 of 20 = 10%: above, waits

    assert ledger(batch[0])[0][1] == "charge" and len(ledger(batch[0])) == 2
    review = ReturnReview.objects.get(lead=batch[1])
    assert ledger(batch[1]) == [("cpl", "charge", CPL)]

    made = decide_return(review_id=review.pk, approve=True)

    assert [c.amount for c in made] == [-CPL]
    assert decide_return(review_id=review.pk, approve=True) == []


def test_a_rejected_return_is_never_credited(leads: LeadBuilder) -> None:
    lead = leads.billed_lead()
    post(lead, report("accepted", ago(3)))
    post(lead, report("returned", ago(2), reason="whatever"))
    review = ReturnReview.objects.get(lead=lead)

    decide_return(review_id=review.pk, approve=False)
    post(lead, report("approved", ago(1)))

    assert ledger(lead) == [("cpa", "charge", CPA), ("cpl", "charge", CPL)]


def test_a_reversed_then_returned_kind_is_corrected_once(leads: LeadBuilder) -> None:
    lead = leads.billed_lead()
    post(lead, report("accepted", ago(3), external_id="acc-1"))
    post(lead, report("reversal", ago(2), reverses="acc-1"))
    post(lead, report("returned", ago(1)))

    assert sum(amount for _, _, amount in ledger(lead)) == Decimal("0.00")
    assert len(ledger(lead)) == 2


# Every order in which a reversal comes after the funding it names.
ORDERS = [
    o
    for o in permutations(["accepted", "funded", "reversal", "returned"])
    if o.index("reversal") > o.index("funded")
]


@pytest.mark.parametrize("order", ORDERS, ids=str)
def test_net_per_kind_does_not_depend_on_arrival_order(
    leads: LeadBuilder, order: tuple[str, ...]
) -> None:
    lead = leads.billed_lead()
    values = {"accepted": {}, "funded": {}, "returned": {}, "reversal": {"reverses": "f-1"}}
    for n, kind in enumerate(order):
        post(
            lead,
            report(
                kind, ago(4 - n), external_id="f-1" if kind == "funded" else None, **values[kind]
            ),
        )

    net: dict[str, Decimal] = {}
    for kind, _, amount in ledger(lead):
        net[kind] = net.get(kind, Decimal(0)) + amount
    assert {kind: net.get(kind, Decimal(0)) for kind in ("cpl", "cpf")} == {
        "cpl": Decimal("0.00"),
        "cpf": Decimal("0.00"),
    }


def test_sandbox_reversals_and_returns_book_nothing(leads: LeadBuilder) -> None:
    partner = PartnerFactory()
    schedule(partner)
    lead = leads.lead(partner=partner, is_sandbox=True)
    post(lead, report("accepted", ago(3), external_id="s-1"))
    post(lead, report("reversal", ago(2), reverses="s-1"))
    post(lead, report("returned", ago(1)))

    assert ledger(lead) == []


def test_an_unknown_reason_waits_for_review_on_the_catch_up_path_too(
    leads: LeadBuilder,
) -> None:
    from billing.charging import charge_unbilled_events
    from tests.billing.builders import billing_offline

    lead = leads.billed_lead()
    start = lead.delivered_at
    # Billing is not listening (an outage): events are stored, nothing is charged.
    with billing_offline():
        post(lead, report("accepted", start + timedelta(hours=1)))
        post(lead, report("returned", start + timedelta(hours=2), reason="changed_my_mind"))

    charge_unbilled_events()

    # The CPL is booked and not credited: the return waits for finance like any other.
    assert ledger(lead) == [("cpl", "charge", CPL)]
    review = ReturnReview.objects.get(lead=lead)
    assert review.status == ReviewStatus.PENDING and "unknown reason code" in review.why
