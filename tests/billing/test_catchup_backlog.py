"""The catch-up charger finds every lead with something to book, corrections included: a
reversal of an event that was charged, and a reversal of a return that credited charges,
stored while billing was away, are booked by the next run, not when something else
happens to touch the lead."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from billing import catchup
from billing.charging import charge_unbilled_events
from tests.billing.builders import LeadBuilder, billing_offline, ledger, post, report


def test_a_reversal_of_a_charged_event_is_booked_by_the_catch_up(leads: LeadBuilder) -> None:
    lead = leads.billed_lead()
    accepted = report("accepted", lead.delivered_at + timedelta(hours=1))
    post(lead, accepted)
    with billing_offline():
        post(
            lead,
            report(
                "reversal", lead.delivered_at + timedelta(hours=2), reverses=accepted.external_id
            ),
        )
    assert ledger(lead) == [("cpl", "charge", Decimal("40.00"))]

    assert lead.pk in catchup.unbilled_lead_ids()
    assert charge_unbilled_events() == 1

    assert ledger(lead) == [
        ("cpl", "charge", Decimal("40.00")),
        ("cpl", "reversal", Decimal("-40.00")),
    ]
    assert lead.pk not in catchup.unbilled_lead_ids()  # nothing left: not picked again
    assert charge_unbilled_events() == 0


def test_a_reversed_return_is_charged_again_by_the_catch_up(leads: LeadBuilder) -> None:
    lead = leads.billed_lead()
    post(lead, report("accepted", lead.delivered_at + timedelta(hours=1)))
    returned = report("returned", lead.delivered_at + timedelta(hours=2))
    post(lead, returned)
    assert ledger(lead) == [
        ("cpl", "charge", Decimal("40.00")),
        ("cpl", "credit", Decimal("-40.00")),
    ]
    with billing_offline():
        post(
            lead,
            report(
                "reversal", lead.delivered_at + timedelta(hours=3), reverses=returned.external_id
            ),
        )

    assert lead.pk in catchup.unbilled_lead_ids()
    assert charge_unbilled_events() == 1

    assert ledger(lead) == [
        ("cpl", "charge", Decimal("40.00")),
        ("cpl", "charge", Decimal("40.00")),
        ("cpl", "credit", Decimal("-40.00")),
    ]
    assert lead.pk not in catchup.unbilled_lead_ids()
    assert charge_unbilled_events() == 0


def test_a_credited_lead_whose_return_stands_is_not_picked_up(leads: LeadBuilder) -> None:
    lead = leads.billed_lead()
    post(lead, report("accepted", lead.delivered_at + timedelta(hours=1)))
    post(lead, report("returned", lead.delivered_at + timedelta(hours=2)))

    assert lead.pk not in catchup.unbilled_lead_ids()
    assert charge_unbilled_events() == 0
