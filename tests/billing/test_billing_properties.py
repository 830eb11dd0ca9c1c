"""Properties (hypothesis) and PostgreSQL races: invoice totals, credits never above
charges, duplicate postback storms, concurrent invoice runs and gapless numbering of
invoices and credit notes."""

from __future__ import annotations

from datetime import timedelta
from decimal import ROUND_HALF_UP, Decimal
from functools import partial

import pytest
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from billing.invoicing import generate_invoices, issue_invoice
from billing.models import Charge, CreditNote, Invoice
from tests.billing.builders import (
    LeadBuilder,
    current_period,
    post,
    report,
    schedule,
)
from tests.concurrency import run_concurrently
from tests.factories import PartnerFactory

db_examples = settings(
    max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
amounts = st.decimals(min_value=Decimal("0.01"), max_value=Decimal("99999.99"), places=2)


@db_examples
@given(
    cpl=amounts,
    cpa=amounts,
    rate=st.decimals(min_value=Decimal("0.0001"), max_value=Decimal("0.9999"), places=4),
    returned=st.booleans(),
)
def test_invoice_total_is_the_sum_of_lines_plus_half_up_tax(
    leads: LeadBuilder, cpl: Decimal, cpa: Decimal, rate: Decimal, returned: bool
) -> None:
    partner = PartnerFactory()
    schedule(partner, cpl=cpl, cpa=cpa, cpf_rate=rate)
    lead = leads.lead(partner=partner)
    at = timezone.now() - timedelta(hours=4)
    for n, kind in enumerate(
        ["accepted", "approved", "funded"] + (["returned"] if returned else [])
    ):
        post(lead, report(kind, at + timedelta(minutes=n)))

    (invoice,) = generate_invoices(period=current_period(), issue=True)

    lines = sum(line.amount for line in invoice.lines.all())
    assert invoice.subtotal == lines
    assert invoice.tax == (lines * invoice.tax_rate).quantize(
        Decimal("0.01"), rounding=ROUND_HALF_UP
    )
    assert invoice.total == invoice.subtotal + invoice.tax


@db_examples
@given(
    events=st.lists(
        st.sampled_from(["accepted", "approved", "funded", "returned", "reversal"]),
        min_size=1,
        max_size=7,
    )
)
def test_credits_on_a_lead_never_exceed_its_charges(leads: LeadBuilder, events: list[str]) -> None:
    lead = leads.billed_lead()
    at = timezone.now() - timedelta(hours=6)
    seen: list[str] = []
    for n, kind in enumerate(events):
        fields = {}
        if kind == "reversal":
            targets = [k for k in seen if k in {"accepted", "approved", "funded"}]
            if not targets:
                continue
            fields = {"reverses": f"{lead.id}-{targets[-1]}"}
        if kind != "returned" and kind in seen:
            continue
        post(
            lead,
            report(
                kind,
                at + timedelta(minutes=n),
                external_id=f"{lead.id}-{kind}-{n}"
                if kind in {"returned", "reversal"}
                else f"{lead.id}-{kind}",
                **fields,
            ),
        )
        seen.append(kind)

    for kind in ["cpl", "cpa", "cpf"]:
        rows = Charge.objects.filter(lead=lead, kind=kind)
        charged = sum(c.amount for c in rows if c.amount > 0)
        credited = -sum(c.amount for c in rows if c.amount < 0)
        assert credited <= charged


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_storm_of_duplicate_postbacks_makes_one_charge() -> None:
    leads = LeadBuilder()
    lead = leads.billed_lead()
    event = report("funded", timezone.now() - timedelta(hours=1), external_id="storm-1")

    results = run_concurrently(*[lambda: post(lead, event)] * 12)

    assert not [r for r in results if isinstance(r, Exception)]
    assert Charge.objects.filter(lead=lead).count() == 1


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_invoice_runs_at_once_make_one_invoice() -> None:
    leads = LeadBuilder()
    partner = PartnerFactory()
    schedule(partner)
    for _ in range(3):
        post(leads.lead(partner=partner), report("accepted", timezone.now() - timedelta(hours=1)))

    results = run_concurrently(
        *[lambda: generate_invoices(period=current_period(), issue=True)] * 4
    )

    assert not [r for r in results if isinstance(r, Exception)]
    assert Invoice.objects.filter(partner=partner).count() == 1
    assert sum(len(r) for r in results) == 1


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_invoice_and_credit_note_numbers_stay_gapless_under_concurrent_issuing() -> None:
    leads = LeadBuilder()
    partners = [PartnerFactory() for _ in range(8)]
    for partner in partners:
        schedule(partner)
        lead = leads.lead(partner=partner)
        post(
            lead,
            report("accepted", timezone.now() - timedelta(hours=2), external_id=f"{lead.id}-a"),
        )
    drafts = generate_invoices(period=current_period())

    run_concurrently(*(partial(issue_invoice, invoice_id=draft.id) for draft in drafts))
    for partner in partners:
        lead = partner.leads.get()
        post(lead, report("returned", timezone.now() - timedelta(hours=1)))
    run_concurrently(*[lambda: generate_invoices(period=current_period())] * 4)

    year = timezone.now().year
    numbers = sorted(Invoice.objects.values_list("number", flat=True))
    notes = sorted(CreditNote.objects.values_list("number", flat=True))
    assert numbers == [f"INV-{year}-{n:06d}" for n in range(1, 9)]
    assert notes == [f"CN-{year}-{n:06d}" for n in range(1, 9)]
