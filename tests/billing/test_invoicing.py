"""Monthly invoices: one per partner, currency and period, every charge billed once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import partial
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db import IntegrityError, transaction
from django.db.models import F, Sum
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from billing.invoicing import (
    InvoicingError,
    Period,
    generate_invoices,
    invoice_partner,
    issue_invoice,
)
from billing.models import Charge, Invoice, InvoiceLine, InvoiceSequence, InvoiceStatus
from billing.money import ZERO, to_cents
from billing.periods import entries_billed_by
from partners.models import Partner
from tests.billing.builders import (
    LeadBuilder,
    current_period,
    post,
    report,
    schedule,
)
from tests.concurrency import run_concurrently
from tests.factories import PartnerFactory, ProductFactory

VAT = Decimal("0.06")


def an_hour_ago() -> datetime:
    return timezone.now() - timedelta(hours=1)


def bill(leads: LeadBuilder, partner: Partner, *event_types: str) -> None:
    """One new lead of the partner's (first) product with these events, an hour ago."""
    product = partner.products.first() or ProductFactory(partner=partner)
    lead = leads.lead(product=product)
    for event_type in event_types:
        post(lead, report(event_type, an_hour_ago()))


def lines_of(invoice: Invoice) -> list[tuple[str, str, str, int, Decimal]]:
    return [
        (line.product.name, line.kind, line.entry_type, line.quantity, line.amount)
        for line in invoice.lines.order_by("product__name", "kind", "entry_type")
    ]


def test_a_draft_per_partner_and_currency_with_lines_by_product_kind_and_type(
    leads: LeadBuilder,
) -> None:
    acme, other = PartnerFactory(), PartnerFactory()
    cash = ProductFactory(partner=acme, name="Cash loan")
    instalment = ProductFactory(partner=acme, name="Instalment loan")
    schedule(acme)
    # Instalment loans are billed in HKD: a separate invoice.
    schedule(acme, product=instalment, currency="HKD", cpl=Decimal("30.00"))
    schedule(other)
    for events in [("accepted", "approved"), ("accepted",), ("accepted", "returned")]:
        lead = leads.lead(product=cash)
        for event_type in events:
            post(lead, report(event_type, an_hour_ago()))
    post(leads.lead(product=instalment), report("accepted", an_hour_ago()))
    bill(leads, other, "approved", "funded")

    made = generate_invoices(period=current_period())

    invoices = {(i.partner_id, i.currency): i for i in made}
    assert set(invoices) == {(acme.pk, "CNY"), (acme.pk, "HKD"), (other.pk, "CNY")}
    assert Invoice.objects.count() == 3
    assert {(i.status, i.number, i.period_start) for i in made} == {
        (InvoiceStatus.DRAFT, None, current_period().start)
    }
    acme_cny = invoices[acme.pk, "CNY"]
    assert lines_of(acme_cny) == [
        ("Cash loan", "cpa", "charge", 1, Decimal("250.00")),
        ("Cash loan", "cpl", "charge", 3, Decimal("120.00")),
        ("Cash loan", "cpl", "credit", 1, Decimal("-40.00")),
    ]
    assert acme_cny.subtotal == Decimal("330.00")
    assert acme_cny.tax_rate == VAT
    assert acme_cny.tax == Decimal("19.80")
    assert acme_cny.total == Decimal("349.80")
    assert lines_of(invoices[acme.pk, "HKD"]) == [
        ("Instalment loan", "cpl", "charge", 1, Decimal("30.00"))
    ]
    # 15000 * 3% = 450; 700 * 6% = 42.
    assert invoices[other.pk, "CNY"].total == Decimal("742.00")


def test_totals_add_up_from_lines_and_tax(leads: LeadBuilder) -> None:
    partner = PartnerFactory()
    schedule(partner)
    bill(leads, partner, "accepted", "approved", "funded")
    bill(leads, partner, "accepted")

    (invoice,) = generate_invoices(period=current_period())

    lines = invoice.lines.aggregate(total=Sum("amount"))["total"]
    assert invoice.subtotal == lines == Decimal("780.00")
    assert invoice.tax == to_cents(invoice.subtotal * VAT)
    assert invoice.total == invoice.subtotal + invoice.tax


def test_tax_rounds_an_exact_half_cent_up(leads: LeadBuilder) -> None:
    partner = PartnerFactory()
    schedule(partner, cpl=Decimal("40.75"))
    bill(leads, partner, "accepted")

    (invoice,) = generate_invoices(period=current_period())

    # 40.75 * 0.06 = 2.445: half up is 2.45 (banker's rounding would give 2.44).
    assert (invoice.subtotal, invoice.tax, invoice.total) == (
        Decimal("40.75"),
        Decimal("2.45"),
        Decimal("43.20"),
    )


def test_the_database_refuses_a_total_a_cent_off(leads: LeadBuilder) -> None:
    partner = PartnerFactory()
    schedule(partner)
    bill(leads, partner, "accepted")
    (invoice,) = generate_invoices(period=current_period())

    with pytest.raises(IntegrityError), transaction.atomic():
        Invoice.objects.filter(pk=invoice.pk).update(total=F("total") + Decimal("0.01"))


def test_every_charge_is_on_exactly_one_invoice(leads: LeadBuilder) -> None:
    partners = [PartnerFactory() for _ in range(3)]
    for partner in partners:
        schedule(partner)
        bill(leads, partner, "accepted", "approved", "returned")

    made = generate_invoices(period=current_period())

    assert Charge.objects.count() == 12
    billed = [c.pk for invoice in made for c in entries_billed_by(invoice)]
    assert sorted(billed) == sorted(Charge.objects.values_list("pk", flat=True))
    for invoice in made:
        assert set(entries_billed_by(invoice).values_list("partner_id", flat=True)) == {
            invoice.partner_id
        }
        assert (
            sum(line.quantity for line in invoice.lines.all()) == entries_billed_by(invoice).count()
        )


def test_rerunning_a_period_makes_nothing(leads: LeadBuilder) -> None:
    partner = PartnerFactory()
    schedule(partner)
    bill(leads, partner, "accepted")
    (invoice,) = generate_invoices(period=current_period())

    again = generate_invoices(period=current_period())

    assert again == []
    assert list(Invoice.objects.values_list("pk", flat=True)) == [invoice.pk]
    assert InvoiceLine.objects.count() == 1


def test_a_late_charge_goes_on_the_next_invoice_and_is_never_billed_twice(
    leads: LeadBuilder,
) -> None:
    partner = PartnerFactory()
    schedule(partner)
    last_month = Period.before(timezone.now().date())
    in_last_month = datetime.combine(last_month.start, datetime.min.time(), tzinfo=UTC)
    product = ProductFactory(partner=partner)
    delivered = in_last_month + timedelta(days=1)
    early = leads.lead(product=product, delivered_at=delivered)
    late = leads.lead(product=product, delivered_at=delivered)
    post(early, report("accepted", in_last_month + timedelta(days=2)))
    (closed,) = generate_invoices(period=last_month)
    # Reported after last month was invoiced, though it happened last month.
    post(late, report("accepted", in_last_month + timedelta(days=3)))

    assert generate_invoices(period=last_month) == []
    (current,) = generate_invoices(period=current_period())

    late_charge = Charge.objects.get(lead=late)
    assert list(entries_billed_by(current)) == [late_charge]
    assert list(entries_billed_by(closed)) == [Charge.objects.get(lead=early)]
    assert current.subtotal == closed.subtotal == Decimal("40.00")
    assert generate_invoices(period=current_period()) == []


def test_a_future_period_is_refused(leads: LeadBuilder) -> None:
    partner = PartnerFactory()
    schedule(partner)
    bill(leads, partner, "accepted")
    next_month = Period(current_period().end)

    with pytest.raises(InvoicingError, match="in the future"):
        generate_invoices(period=next_month)
    assert not Invoice.objects.exists()


def test_a_period_must_be_year_and_month() -> None:
    with pytest.raises(InvoicingError, match="YYYY-MM"):
        Period.parse("2026-13")


def test_a_partner_with_nothing_to_bill_gets_no_invoice(leads: LeadBuilder) -> None:
    partner = PartnerFactory()
    schedule(partner)

    assert generate_invoices(period=current_period()) == []
    assert invoice_partner(partner_id=partner.pk, period=current_period()) == []


def make_drafts(leads: LeadBuilder, count: int) -> list[Invoice]:
    for _ in range(count):
        partner = PartnerFactory()
        schedule(partner)
        bill(leads, partner, "accepted")
    return generate_invoices(period=current_period())


def test_issuing_gives_gapless_numbers_per_year(leads: LeadBuilder) -> None:
    drafts = make_drafts(leads, 3)
    year = timezone.now().year

    issued = [issue_invoice(invoice_id=draft.pk) for draft in drafts]

    assert [i.number for i in issued] == [f"INV-{year}-{n:06d}" for n in (1, 2, 3)]
    assert {i.status for i in issued} == {InvoiceStatus.ISSUED}
    assert all(i.issued_at is not None for i in issued)


def test_issuing_an_issued_invoice_changes_nothing(leads: LeadBuilder) -> None:
    (draft,) = make_drafts(leads, 1)
    first = issue_invoice(invoice_id=draft.pk)

    again = issue_invoice(invoice_id=draft.pk)

    assert (again.number, again.issued_at) == (first.number, first.issued_at)
    assert InvoiceSequence.objects.get(year=timezone.now().year).last_number == 1


def test_generate_with_issue_numbers_every_invoice(leads: LeadBuilder) -> None:
    for partner in [PartnerFactory(), PartnerFactory()]:
        schedule(partner)
        bill(leads, partner, "accepted")

    made = generate_invoices(period=current_period(), issue=True)

    year = timezone.now().year
    assert sorted(i.number for i in made) == [f"INV-{year}-000001", f"INV-{year}-000002"]


# --- the management command ---------------------------------------------------------------


@pytest.mark.django_db
def test_command_refuses_a_month_that_does_not_exist() -> None:
    with pytest.raises(CommandError) as refused:
        call_command("generate_invoices", "--period", "2026-13")

    assert str(refused.value) == "period must look like YYYY-MM, got '2026-13'"


@pytest.mark.django_db
def test_command_refuses_a_future_month() -> None:
    next_month = str(Period(current_period().end))

    with pytest.raises(CommandError) as refused:
        call_command("generate_invoices", "--period", next_month)

    assert str(refused.value) == f"period {next_month} is in the future"
    assert not Invoice.objects.exists()


def test_command_prints_how_many_invoices_it_made(leads: LeadBuilder) -> None:
    for _ in range(2):
        partner = PartnerFactory()
        schedule(partner)
        bill(leads, partner, "accepted")
    period = f"{current_period()}"
    out = StringIO()

    call_command("generate_invoices", "--period", period, stdout=out)
    call_command("generate_invoices", "--period", period, stdout=out)

    printed = out.getvalue().splitlines()
    assert f"2 invoice(s) made for {period}." in printed
    assert printed[-1] == f"0 invoice(s) made for {period}."
    assert Invoice.objects.count() == 2


# --- properties ---------------------------------------------------------------------------


@settings(
    max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    fees=st.lists(
        st.tuples(
            st.decimals(min_value=Decimal("0.01"), max_value=Decimal("99999.99"), places=2),
            st.booleans(),
        ),
        min_size=1,
        max_size=5,
    )
)
def test_invoice_total_is_its_lines_plus_rounded_tax(
    leads: LeadBuilder, fees: list[tuple[Decimal, bool]]
) -> None:
    partner = PartnerFactory()
    # A CPF rate of 100% and no bounds: each funded principal becomes a charge of that amount.
    schedule(partner, cpf_rate=Decimal("1"), cpf_min=ZERO, cpf_max=None)
    product = ProductFactory(partner=partner)
    for principal, returned in fees:
        lead = leads.lead(product=product)
        post(lead, report("funded", an_hour_ago(), principal=principal))
        if returned:
            post(lead, report("returned", an_hour_ago()))

    (invoice,) = (i for i in generate_invoices(period=current_period()) if i.partner == partner)

    kept = sum((amount for amount, returned in fees if not returned), ZERO)
    lines = sum((line.amount for line in invoice.lines.all()), ZERO)
    assert invoice.subtotal == lines == kept
    assert invoice.tax == to_cents(kept * VAT)
    assert invoice.total == lines + to_cents(lines * VAT)


# --- PostgreSQL: concurrent runs ------------------------------------------------------------


@pytest.mark.postgres
def test_concurrent_runs_make_one_invoice_per_partner(
    transactional_db: None, leads: LeadBuilder
) -> None:
    partners = [PartnerFactory() for _ in range(3)]
    for partner in partners:
        schedule(partner)
        bill(leads, partner, "accepted", "approved")
        bill(leads, partner, "accepted")
    period = current_period()

    results = run_concurrently(*[lambda: generate_invoices(period=period)] * 4)

    assert not [r for r in results if isinstance(r, Exception)]
    assert sum(len(made) for made in results) == 3
    assert sorted(Invoice.objects.values_list("partner_id", flat=True)) == sorted(
        p.pk for p in partners
    )
    billed = [c.pk for invoice in Invoice.objects.all() for c in entries_billed_by(invoice)]
    assert sorted(billed) == sorted(Charge.objects.values_list("pk", flat=True))
    for invoice in Invoice.objects.all():
        assert invoice.subtotal == Decimal("330.00")
        assert entries_billed_by(invoice).count() == 3


@pytest.mark.postgres
def test_concurrent_issuing_gives_numbers_without_gaps_or_duplicates(
    transactional_db: None, leads: LeadBuilder
) -> None:
    drafts = make_drafts(leads, 10)
    year = timezone.now().year

    results = run_concurrently(*(partial(issue_invoice, invoice_id=draft.pk) for draft in drafts))

    assert not [r for r in results if isinstance(r, Exception)]
    numbers = sorted(Invoice.objects.values_list("number", flat=True))
    assert numbers == [f"INV-{year}-{n:06d}" for n in range(1, 11)]
    assert InvoiceSequence.objects.get(year=year).last_number == 10
