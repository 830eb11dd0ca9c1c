"""One definition of a partner's balance (billing.balances): the statement, the partner API
and the credit limit agree with the documents, count every ledger entry once and compare
VAT-inclusive amounts with VAT-inclusive amounts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.utils import timezone

from billing.credit import HOLD_REASON, evaluate_credit_limit
from billing.invoicing import generate_invoices, void_invoice
from billing.models import (
    Charge,
    CreditNote,
    Invoice,
    InvoiceStatus,
    PartnerBillingProfile,
    Payment,
)
from billing.money import to_cents
from billing.payments import record_payment
from billing.periods import Period
from billing.statements import statement
from marketplace.models import Lead
from partners.holds import lift_hold
from partners.models import Partner
from tests.billing.builders import LeadBuilder, current_period, post, report, schedule
from tests.conftest import partner_client
from tests.factories import PartnerFactory
from tests.holds import held_for

ZERO = Decimal("0.00")


def minutes_ago(minutes: float) -> datetime:
    """``minutes`` (< 120) ago, squeezed into this month when it began less than two hours
    ago, keeping the order of times."""
    now = timezone.now()
    month_start = datetime(now.year, now.month, 1, tzinfo=UTC)
    if now - month_start >= timedelta(hours=2):
        return now - timedelta(minutes=minutes)
    return month_start + (now - month_start) * (1 - minutes / 120)


def vat(net: Decimal) -> Decimal:
    """An invoice's total for ``net`` (R9), written out here rather than imported."""
    subtotal = to_cents(net)
    return subtotal + to_cents(subtotal * Decimal(str(settings.VAT_RATE)))


def fresh_lead(leads: LeadBuilder, partner: Partner) -> Lead:
    return leads.lead(partner=partner, delivered_at=minutes_ago(60))


def accept_and_approve(leads: LeadBuilder, partner: Partner, tag: str) -> Lead:
    lead = fresh_lead(leads, partner)
    post(lead, report("accepted", minutes_ago(50), external_id=f"{tag}-acc"))
    post(lead, report("approved", minutes_ago(49), external_id=f"{tag}-apr"))
    return lead


def documents_of(partner: Partner) -> dict[str, Decimal]:
    """The balance recomputed from the document rows alone (no billing code)."""
    invoices = list(Invoice.objects.filter(partner=partner, currency="CNY"))
    notes = list(CreditNote.objects.filter(partner=partner, currency="CNY"))
    payments = list(Payment.objects.filter(partner=partner, currency="CNY"))
    issued = sum((i.total for i in invoices if i.status != InvoiceStatus.DRAFT), ZERO)
    credited = sum((n.total for n in notes), ZERO)
    paid = sum((p.amount for p in payments), ZERO)
    return {
        "issued": issued,
        "credited": credited,
        "paid": paid,
        "balance": issued - credited - paid,
        "drafts": sum((i.total for i in invoices if i.status == InvoiceStatus.DRAFT), ZERO),
        # Net amounts on documents: void invoices and their full credit notes cancel.
        "billed_net": sum((i.subtotal for i in invoices), ZERO)
        - sum((n.subtotal for n in notes), ZERO),
    }


def test_the_balance_equals_the_sum_of_its_documents(leads: LeadBuilder, partner: Partner) -> None:
    # Last month: a CPL and a CPA, invoiced and issued, voided, re-issued as a replacement.
    last = Period.before(timezone.now().date())
    t0 = datetime.combine(last.start, datetime.min.time(), tzinfo=UTC) + timedelta(days=1)
    old = leads.lead(partner=partner, delivered_at=t0)
    post(old, report("accepted", t0 + timedelta(hours=1), external_id="old-acc"))
    post(old, report("approved", t0 + timedelta(hours=2), external_id="old-apr"))
    (first,) = generate_invoices(period=last, issue=True)
    void_invoice(invoice_id=first.id, reason="wrong billing address")
    (replacement,) = generate_invoices(period=last, issue=True)
    # This month: the partner reverses last month's approval (a credit note against the
    # replacement when this month is invoiced) and buys a lead: both go on a draft.
    post(old, report("reversal", minutes_ago(55), external_id="old-rev", reverses="old-apr"))
    post(fresh_lead(leads, partner), report("accepted", minutes_ago(54), external_id="c-acc"))
    generate_invoices(period=current_period())
    # After the draft was made: a lead accepted and approved, not invoiced yet.
    accept_and_approve(leads, partner, "late")
    record_payment(
        partner_id=partner.pk,
        currency="CNY",
        amount="500.00",
        received_at=timezone.now(),
        bank_reference="B-500",
    )

    docs = documents_of(partner)
    result = statement(partner_id=partner.pk, currency="CNY")
    ledger_net = sum(Charge.objects.filter(partner=partner).values_list("amount", flat=True), ZERO)
    uninvoiced_net = ledger_net - docs["billed_net"]

    assert (first.status, replacement.total) == (InvoiceStatus.ISSUED, first.total)
    assert (result.invoiced, result.credited, result.paid) == (
        docs["issued"],
        docs["credited"],
        docs["paid"],
    )
    assert result.balance == docs["balance"] == Decimal("-457.60")
    assert uninvoiced_net == Decimal("290.00")
    assert result.uninvoiced == vat(uninvoiced_net) == Decimal("307.40")
    assert result.drafts == docs["drafts"] == Decimal("42.40")
    assert result.exposure == docs["balance"] + docs["drafts"] + vat(uninvoiced_net)


def test_credit_notes_are_not_counted_twice(leads: LeadBuilder, partner: Partner) -> None:
    accept_and_approve(leads, partner, "a")
    (invoice,) = generate_invoices(period=current_period(), issue=True)
    post(invoice.partner.leads.get(), report("returned", minutes_ago(10)))
    generate_invoices(period=current_period(), issue=True)  # the credit note for the return
    note = CreditNote.objects.get(invoice=invoice)

    result = statement(partner_id=partner.pk, currency="CNY")
    body = partner_client(partner).get("/api/v1/partner/statement").json()

    # The return is billed by the credit note and nowhere else.
    assert note.total == invoice.total == Decimal("307.40")
    assert (result.balance, result.uninvoiced) == (ZERO, ZERO)
    assert (result.drafts, result.exposure) == (ZERO, ZERO)
    assert (body["balance"], body["uninvoiced"], body["exposure"]) == ("0.00", "0.00", "0.00")


def test_a_partner_over_its_limit_only_by_the_vat_is_held(
    leads: LeadBuilder, partner: Partner
) -> None:
    # CPL 40 uninvoiced: 42.40 with VAT, over a limit of 41 (40 alone would be under it).
    PartnerBillingProfile.objects.create(partner=partner, credit_limit=Decimal("41.00"))
    post(fresh_lead(leads, partner), report("accepted", minutes_ago(5)))

    assert held_for(partner) == {HOLD_REASON}
    assert statement(partner_id=partner.pk, currency="CNY").exposure == Decimal("42.40")


def test_a_draft_counts_with_its_vat_towards_the_limit(
    leads: LeadBuilder, partner: Partner
) -> None:
    PartnerBillingProfile.objects.create(partner=partner, credit_limit=Decimal("41.00"))
    post(fresh_lead(leads, partner), report("accepted", minutes_ago(5)))
    lift_hold(partner_id=partner.pk, reason=HOLD_REASON)
    generate_invoices(period=current_period())  # a draft of 42.40

    assert evaluate_credit_limit(partner_id=partner.pk) is True


def test_a_credit_note_lowers_the_exposure_once_not_twice(
    leads: LeadBuilder, partner: Partner
) -> None:
    # An issued invoice fully credited after a return: the partner owes nothing on it.
    PartnerBillingProfile.objects.create(partner=partner, credit_limit=Decimal("300.00"))
    accept_and_approve(leads, partner, "a")
    (invoice,) = generate_invoices(period=current_period(), issue=True)
    record_payment(
        partner_id=partner.pk,
        currency="CNY",
        amount=str(invoice.total),
        received_at=timezone.now(),
        bank_reference="B-1",
    )
    post(invoice.partner.leads.get(), report("returned", minutes_ago(10)))
    generate_invoices(period=current_period(), issue=True)  # credit note 307.40
    # Then it buys 290 more (307.40 with VAT): over 300, once the credit is counted once.
    # (Paid 307.40, credited 307.40: the balance is -307.40; exposure 0.00.)
    accept_and_approve(leads, partner, "b")

    assert HOLD_REASON not in held_for(partner)  # exposure 0.00: within the limit
    # A second purchase, with no credit behind it, goes over.
    accept_and_approve(leads, partner, "c")
    result = statement(partner_id=partner.pk, currency="CNY")
    assert (result.balance, result.uninvoiced) == (Decimal("-307.40"), Decimal("614.80"))
    assert held_for(partner) == {HOLD_REASON}


def test_the_statement_uses_the_partners_currency(leads: LeadBuilder) -> None:
    partner = PartnerFactory()
    schedule(partner, currency="USD", cpl=Decimal("10.00"))
    post(fresh_lead(leads, partner), report("accepted", minutes_ago(5)))

    assert statement(partner_id=partner.pk, currency="USD").uninvoiced == Decimal("10.60")
    assert statement(partner_id=partner.pk, currency="CNY").exposure == ZERO
