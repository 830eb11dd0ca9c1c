"""The batched catch-up charger books exactly what the live path's ``settle_lead`` books.

The hypothesis test draws the fee-model test's worlds (schedules with marginal tiers and
versions, two currencies with or without rates, auction bids, sandbox leads, reversals,
returns with known and unknown reasons, reviews, revenue). Some events arrive live, the
rest are stored while billing is away, then late schedules or rates may be entered. From
that one state, each pair of runs is compared entry by entry (lead, kind, chain, seq, type,
amount, currency, unit number, event, schedule, conversion, times, billing month, the
corrected position), with the fees left waiting for a rate and the reviews opened:

- the catch-up run as it was before batching (each lead settled with ``settle_lead`` in its
  own transaction under its row lock, then the touched tiered months re-tiered lead by
  lead) against ``charge_unbilled_events`` in batches of a drawn size;
- every lead settled with ``settle_lead`` against ``catchup.settle_leads`` in batches.

PostgreSQL tests: a batch run twice, two runs at once, and runs racing live events book
every fee exactly once.
"""

from __future__ import annotations

import os
import uuid
from datetime import date, timedelta
from decimal import Decimal
from functools import partial
from typing import Any

import pytest
from django.db import IntegrityError, transaction
from django.test import override_settings
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.django import TestCase

from billing import catchup, charging, tiers
from billing.charging import charge_unbilled_events
from billing.fees import create_fee_schedule
from billing.locks import hold_billing_lock
from billing.models import Charge, EntryType, FeeSchedule, PendingFee, ReturnReview
from billing.periods import month_of
from billing.pricing import FeeTerms, Tier
from billing.settlement import LeadBook, Writes, settle
from marketplace.events import EventReport, record_event
from marketplace.models import Lead, LeadEvent
from tests.billing import test_fee_model_property as fmp
from tests.billing.builders import LeadBuilder, post, report, schedule
from tests.concurrency import run_concurrently

EXAMPLES = int(os.environ.get("CATCHUP_EXAMPLES", "25"))
PHASES = fmp.SHRINK if os.environ.get("CATCHUP_SHRINK", "1") == "1" else fmp.NO_SHRINK

Row = tuple[Any, ...]


class _Rollback(Exception):
    pass


def record(lead: Lead, event_report: EventReport) -> LeadEvent:
    """Store an event as marketplace does while billing is away: no charge."""
    return record_event(lead_id=lead.pk, partner_id=lead.partner_id, report=event_report)[0]


def ledger_rows() -> list[Row]:
    """Every ledger entry, by its position, with everything that was decided about it."""
    seq_of = dict(Charge.objects.values_list("id", "seq"))
    rows = Charge.objects.values_list(
        "lead_id",
        "kind",
        "chain",
        "seq",
        "prev_seq",
        "entry_type",
        "amount",
        "currency",
        "unit_number",
        "event_id",
        "schedule_id",
        "source_amount",
        "source_currency",
        "fx_rate",
        "exchange_rate_id",
        "occurred_at",
        "period",
        "reason",
        "partner_id",
        "product_id",
        "corrects_id",
    )
    return sorted((*row[:-1], seq_of.get(row[-1])) for row in rows)


def state() -> tuple[list[Row], list[Row], list[Row]]:
    pending = sorted(
        (*row[:-1], row[-1] is None)
        for row in PendingFee.objects.values_list(
            "event_id", "kind", "from_currency", "to_currency", "resolved_at"
        )
    )
    reviews = sorted(ReturnReview.objects.values_list("event_id", "status", "reason_code"))
    return ledger_rows(), pending, reviews


def outcome_of(run: Any) -> tuple[Any, tuple[list[Row], list[Row], list[Row]]]:
    """What ``run`` returns and leaves in the database, then undone."""
    try:
        with transaction.atomic():
            result = run()
            after = state()
            raise _Rollback
    except _Rollback:
        pass
    return result, after


def catch_up_lead_by_lead() -> int:
    """The catch-up run before batching, on the live path's ``settle_lead``: each lead in
    its own transaction under its row lock, then each touched tiered month re-tiered by
    settling every lead with a unit in it under the partner's exclusive billing lock."""
    made: list[Charge] = []
    for lead_id in sorted(set(catchup.unbilled_lead_ids())):
        with transaction.atomic():
            lead = Lead.objects.select_for_update().get(pk=lead_id)
            made += charging.settle_lead(lead=lead)
    count = len(made)
    touched: dict[uuid.UUID, set[date]] = {}
    for entry in made:
        if entry.kind in tiers.TIERED_KINDS and entry.entry_type == EntryType.CHARGE:
            touched.setdefault(entry.partner_id, set()).add(month_of(entry.event.occurred_at))
    for partner_id, months in sorted(touched.items()):
        with transaction.atomic():
            hold_billing_lock(partner_id=partner_id)
            for month in sorted(tiers.tiered_months(partner_id, months)):
                lead_ids = tiers.unit_lead_ids(partner_id=partner_id, month=month)
                for lead in Lead.objects.filter(pk__in=lead_ids):
                    count += len(charging.settle_lead(lead=lead))
    return count


def settle_each(lead_ids: list[uuid.UUID]) -> int:
    made = 0
    for lead_id in lead_ids:
        with transaction.atomic():
            made += len(charging.settle_lead(lead=Lead.objects.select_for_update().get(pk=lead_id)))
    return made


def settle_in_batches(lead_ids: list[uuid.UUID], size: int) -> int:
    made = 0
    units = catchup.UnitNumbers()
    for start in range(0, len(lead_ids), size):
        with transaction.atomic():
            made += len(catchup.settle_leads(lead_ids[start : start + size], units=units))
    return made


def backlog(scenario: fmp.Scenario) -> fmp.Product_:
    """The scenario's first ``split`` arrivals live, the rest stored while billing is away
    (decisions wait for billing to open their reviews), then the late configuration."""
    made = fmp._make_world(scenario)
    if "schedules" not in scenario.late:
        fmp._enter_schedules(made, scenario)
    if "rates" not in scenario.late:
        fmp._enter_rates(scenario)
    for n, action in enumerate(scenario.actions):
        live = n < scenario.split
        if live or action.kind != "decide":
            fmp._deliver(made, action, billing=live)
    if "schedules" in scenario.late:
        fmp._enter_schedules(made, scenario)
    if "rates" in scenario.late:
        fmp._enter_rates(scenario)
    return made


def assert_same(batched: Any, lead_by_lead: Any) -> None:
    (made_b, (entries_b, pending_b, reviews_b)) = batched
    (made_l, (entries_l, pending_l, reviews_l)) = lead_by_lead
    missing = [row for row in entries_l if row not in entries_b]
    extra = [row for row in entries_b if row not in entries_l]
    assert entries_b == entries_l, f"batch lacks {missing}\nbatch adds {extra}"
    assert pending_b == pending_l
    assert reviews_b == reviews_l
    assert made_b == made_l


@override_settings(RETURN_WINDOW_DAYS=fmp.RETURN_WINDOW_DAYS)
class TestBatchesPriceLikeTheLivePath(TestCase):
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        phases=PHASES,
        suppress_health_check=list(HealthCheck),
    )
    @given(scenario=fmp.scenarios(), size=st.integers(1, 5))
    def test_catch_up_in_batches_books_what_settle_lead_books(
        self, scenario: fmp.Scenario, size: int
    ) -> None:
        made = backlog(scenario)
        lead_ids = sorted(lead.pk for lead in made.leads.values())

        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(catchup, "BATCH", size)
            batched = outcome_of(charge_unbilled_events)
        assert_same(batched, outcome_of(catch_up_lead_by_lead))

        assert_same(
            outcome_of(partial(settle_in_batches, lead_ids, size)),
            outcome_of(partial(settle_each, lead_ids)),
        )


# --- Unit numbers kept across batches -------------------------------------------------------


def tiered_schedule(partner: Any) -> FeeSchedule:
    """CPL 40, from the 2nd unit of the month 30."""
    return create_fee_schedule(
        partner=partner,
        effective_from=timezone.now() - timedelta(days=365),
        terms=FeeTerms(cpl=Decimal("40.00"), tiers=(Tier(1, cpl=Decimal("30.00")),)),
    )


def test_a_unit_stored_between_two_batches_renumbers_the_second(leads: LeadBuilder) -> None:
    first = leads.lead()
    second = leads.lead(product=first.product)
    tiered_schedule(first.partner)
    early = second.delivered_at + timedelta(hours=1)
    record(second, report("accepted", early + timedelta(hours=2)))
    units = catchup.UnitNumbers()  # kept across the batches of one run
    charged = catchup.settle_leads([second.pk], units=units)
    assert [(e.unit_number, e.amount) for e in charged] == [(1, Decimal("40.00"))]

    record(first, report("accepted", early))  # now the month's first unit
    made = catchup.settle_leads([second.pk], units=units)

    assert [(e.entry_type, e.unit_number, e.amount) for e in made] == [
        ("reprice", None, Decimal("-40.00")),
        ("charge", 2, Decimal("30.00")),
    ]


def test_batches_judge_a_return_with_an_unknown_reason_once(leads: LeadBuilder) -> None:
    lead = leads.billed_lead()
    record(lead, report("accepted", lead.delivered_at + timedelta(hours=1)))
    record(lead, report("returned", lead.delivered_at + timedelta(hours=2), reason="why_not"))

    made = charge_unbilled_events()

    assert made == 1  # the CPL: the return waits for review, so it does not credit it ...
    assert ReturnReview.objects.filter(lead=lead).count() == 1
    assert charge_unbilled_events() == 0  # ... and the next run neither re-books nor re-judges
    assert ReturnReview.objects.filter(lead=lead).count() == 1


# --- PostgreSQL: exactly once under concurrency --------------------------------------------


def chains_are_exact(lead_ids: list[uuid.UUID]) -> None:
    """Every chain of these leads is 1, 2, 3 ... with charges at odd positions."""
    for lead_id in lead_ids:
        seqs: dict[tuple[str, str], list[tuple[int, str]]] = {}
        for kind, chain, seq, entry_type in Charge.objects.filter(lead_id=lead_id).values_list(
            "kind", "chain", "seq", "entry_type"
        ):
            seqs.setdefault((kind, chain), []).append((seq, entry_type))
        for key, positions in seqs.items():
            positions.sort()
            assert [s for s, _ in positions] == list(range(1, len(positions) + 1)), key
            assert all((t == EntryType.CHARGE) == (s % 2 == 1) for s, t in positions), key


@pytest.mark.postgres
def test_two_catch_up_runs_at_once_book_each_fee_once(
    transactional_db: None, leads: LeadBuilder
) -> None:
    first = leads.lead()
    made = [first] + [leads.lead(product=first.product) for _ in range(29)]
    for n, lead in enumerate(made):
        record(lead, report("accepted", lead.delivered_at + timedelta(hours=1)))
        if n % 2:
            record(lead, report("approved", lead.delivered_at + timedelta(hours=2)))
    schedule(first.partner)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(catchup, "BATCH", 7)
        results = run_concurrently(charge_unbilled_events, charge_unbilled_events)

    assert not [r for r in results if isinstance(r, BaseException)], results
    assert sum(r for r in results if isinstance(r, int)) == 45
    assert Charge.objects.count() == 45
    assert Charge.objects.filter(seq__gt=1).count() == 0
    assert charge_unbilled_events() == 0  # run again: nothing


@pytest.mark.postgres
def test_catch_up_racing_live_events_books_each_fee_once(
    transactional_db: None, leads: LeadBuilder
) -> None:
    first = leads.lead()
    made = [first] + [leads.lead(product=first.product) for _ in range(19)]
    for lead in made:
        record(lead, report("accepted", lead.delivered_at + timedelta(hours=1)))
    schedule(first.partner)

    def live(lead: Lead) -> object:
        # Each approval is charged live; its lead's CPL by whichever comes first.
        return post(lead, report("approved", lead.delivered_at + timedelta(hours=2)))

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(catchup, "BATCH", 5)
        results = run_concurrently(
            charge_unbilled_events,
            charge_unbilled_events,
            *(partial(live, lead) for lead in made[::2]),
        )

    assert not [r for r in results if isinstance(r, BaseException)], results
    assert charge_unbilled_events() == 0
    ids = [lead.pk for lead in made]
    chains_are_exact(ids)
    charges = Charge.objects.filter(entry_type=EntryType.CHARGE)
    assert charges.filter(kind="cpl").count() == 20
    assert charges.filter(kind="cpa").count() == 10
    assert Charge.objects.count() == 30
    assert set(charges.values_list("event_id", flat=True)) == set(
        LeadEvent.objects.filter(lead_id__in=ids).values_list("id", flat=True)
    )


def test_a_batch_that_read_a_stale_chain_cannot_book_its_fee_again(
    leads: LeadBuilder,
) -> None:
    """The database, not hope, keeps a fee from being booked twice: entries decided from a
    chain read before its charge was booked collide with it on the chain's position."""
    lead = leads.billed_lead()
    record(lead, report("accepted", lead.delivered_at + timedelta(hours=1)))
    assert len(charging.settle_lead(lead=lead)) == 1
    stale = LeadBook(lead, list(LeadEvent.objects.filter(lead=lead)), [], {}, None)
    out = Writes()
    pricer = catchup.BatchPricer([lead.partner_id], catchup.UnitNumbers())
    assert [e.seq for e in settle(stale, pricer, out)] == [1]

    with pytest.raises(IntegrityError), transaction.atomic():
        out.flush()

    assert Charge.objects.filter(lead=lead).count() == 1
