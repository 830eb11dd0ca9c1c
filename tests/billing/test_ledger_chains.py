"""The ledger of a lead's fee kind is a chain charge, correction, charge, ... whose net is
0 or 1 unit: re-reports after a reversal and reversed returns are charged again, and the
database refuses any entry that would break the chain. Currencies are converted at the
finance-entered rate in force, never relabelled; without one the fee waits."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from billing.charging import charge_unbilled_events
from billing.fx import ExchangeRateError, record_rate
from billing.models import Charge, PendingFee
from marketplace.models import Lead
from tests.billing.builders import LeadBuilder, post, report, schedule
from tests.factories import PartnerFactory, ProductFactory

CPL, CPA, CPF = Decimal("40.00"), Decimal("250.00"), Decimal("450.00")


@pytest.fixture
def leads(db: None) -> LeadBuilder:
    return LeadBuilder()


def chain(lead: Lead, kind: str) -> list[tuple[int, str, Decimal]]:
    return list(
        Charge.objects.filter(lead=lead, kind=kind)
        .order_by("seq")
        .values_list("seq", "entry_type", "amount")
    )


def net(lead: Lead, kind: str) -> Decimal:
    return sum((amount for _, _, amount in chain(lead, kind)), Decimal(0))


@pytest.mark.parametrize(
    ("event_type", "kind", "fee"), [("accepted", "cpl", CPL), ("funded", "cpf", CPF)]
)
def test_reported_again_after_a_reversal_is_charged_again(
    leads: LeadBuilder, event_type: str, kind: str, fee: Decimal
) -> None:
    lead = leads.billed_lead()
    start = lead.delivered_at
    if event_type == "funded":
        post(lead, report("approved", start + timedelta(minutes=30)))
    post(lead, report(event_type, start + timedelta(hours=1), external_id="first"))
    post(lead, report("reversal", start + timedelta(hours=2), reverses="first"))

    post(lead, report(event_type, start + timedelta(hours=3), external_id="again"))

    assert chain(lead, kind) == [(1, "charge", fee), (2, "reversal", -fee), (3, "charge", fee)]
    assert net(lead, kind) == fee


def test_reversing_a_return_books_again_everything_it_credited(leads: LeadBuilder) -> None:
    lead = leads.billed_lead()
    start = lead.delivered_at
    for hours, event_type in enumerate(["accepted", "approved", "funded"], start=1):
        post(lead, report(event_type, start + timedelta(hours=hours)))
    post(lead, report("returned", start + timedelta(hours=5), external_id="ret"))
    assert all(net(lead, kind) == 0 for kind in ("cpl", "cpa", "cpf"))

    undone_at = start + timedelta(hours=6)
    post(lead, report("reversal", undone_at, reverses="ret"))

    for kind, fee in (("cpl", CPL), ("cpa", CPA), ("cpf", CPF)):
        assert chain(lead, kind) == [(1, "charge", fee), (2, "credit", -fee), (3, "charge", fee)]
    rebooked = Charge.objects.filter(lead=lead, seq=3)
    assert {entry.occurred_at for entry in rebooked} == {undone_at}


def test_a_reversed_return_lets_the_next_return_credit(leads: LeadBuilder) -> None:
    lead = leads.billed_lead()
    start = lead.delivered_at
    post(lead, report("accepted", start + timedelta(hours=1)))
    post(lead, report("returned", start + timedelta(hours=2), external_id="r1"))
    post(lead, report("reversal", start + timedelta(hours=3), reverses="r1"))
    assert net(lead, "cpl") == CPL

    post(lead, report("returned", start + timedelta(hours=4), reason="fraud_suspected"))

    assert chain(lead, "cpl")[-1] == (4, "credit", -CPL)
    assert Charge.objects.get(lead=lead, seq=4).reason == "fraud_suspected"


def test_reports_reversals_and_returns_in_any_number_keep_the_net_at_most_one_unit(
    leads: LeadBuilder,
) -> None:
    lead = leads.billed_lead()
    at = lead.delivered_at
    for round_ in range(3):
        post(
            lead, report("accepted", at + timedelta(minutes=10 * round_), external_id=f"a{round_}")
        )
        post(
            lead, report("reversal", at + timedelta(minutes=10 * round_ + 1), reverses=f"a{round_}")
        )
    post(lead, report("accepted", at + timedelta(minutes=40), external_id="a-final"))

    assert [entry for _, entry, _ in chain(lead, "cpl")] == ["charge", "reversal"] * 3 + ["charge"]
    assert net(lead, "cpl") == CPL


def _entry(lead: Lead, *, seq: int, entry_type: str, amount: str, corrects: Charge | None = None):
    first = Charge.objects.filter(lead=lead).order_by("seq").first()
    assert first is not None
    return Charge(
        partner_id=lead.partner_id,
        lead=lead,
        product_id=lead.product_id,
        event_id=first.event_id,
        kind="cpl",
        entry_type=entry_type,
        amount=Decimal(amount),
        currency="CNY",
        occurred_at=timezone.now(),
        period=first.period,
        seq=seq,
        prev_seq=seq - 1 if seq > 1 else None,
        corrects=corrects,
    )


def test_the_database_refuses_a_second_open_charge_in_a_chain(leads: LeadBuilder) -> None:
    lead = leads.billed_lead()
    post(lead, report("accepted", lead.delivered_at + timedelta(hours=1)))

    with pytest.raises(IntegrityError), transaction.atomic():
        _entry(lead, seq=1, entry_type="charge", amount="40.00").save(force_insert=True)
    # A charge at a correction's position is refused too.
    with pytest.raises(IntegrityError), transaction.atomic():
        _entry(lead, seq=2, entry_type="charge", amount="40.00").save(force_insert=True)


def test_the_database_refuses_a_correction_at_a_charges_position(leads: LeadBuilder) -> None:
    lead = leads.billed_lead()
    post(lead, report("accepted", lead.delivered_at + timedelta(hours=1)))
    charge = Charge.objects.get(lead=lead)

    with pytest.raises(IntegrityError), transaction.atomic():
        _entry(lead, seq=3, entry_type="credit", amount="-40.00", corrects=charge).save(
            force_insert=True
        )


@pytest.mark.postgres
def test_postgres_refuses_a_position_that_skips_one(leads: LeadBuilder) -> None:
    lead = leads.billed_lead()
    post(lead, report("accepted", lead.delivered_at + timedelta(hours=1)))
    assert connection.vendor == "postgresql"

    # seq 3 (a charge) without seq 2: a second unit on the chain; the chain's foreign key
    # from (lead, kind, chain, seq - 1) refuses it.
    with pytest.raises(IntegrityError), transaction.atomic():
        _entry(lead, seq=3, entry_type="charge", amount="40.00").save(force_insert=True)


# Currencies --------------------------------------------------------------------------


def usd_partner_lead(leads: LeadBuilder, **fees: object) -> Lead:
    product = ProductFactory(partner=PartnerFactory())
    schedule(
        product.partner,
        currency="USD",
        cpl=Decimal("6.00"),
        cpa=Decimal("35.00"),
        cpf_rate=Decimal("0.0300"),
        cpf_min=Decimal("5.00"),
        cpf_max=Decimal("400.00"),
        **fees,
    )
    return leads.lead(product=product)


def test_a_cny_principal_is_converted_at_the_rate_in_force_before_pricing(
    leads: LeadBuilder,
) -> None:
    lead = usd_partner_lead(leads)
    start = lead.delivered_at
    record_rate(
        from_currency="CNY",
        to_currency="USD",
        rate="0.14000000",
        effective_from=start - timedelta(days=30),
        source="test: older rate",
    )
    in_force = record_rate(
        from_currency="CNY",
        to_currency="USD",
        rate="0.13812345",
        effective_from=start - timedelta(days=1),
        source="PBOC central parity",
    )
    # Entered later but effective after the event: not in force at the event's time.
    record_rate(
        from_currency="CNY",
        to_currency="USD",
        rate="0.20000000",
        effective_from=timezone.now() + timedelta(days=1),
        source="test: future rate",
    )
    post(lead, report("approved", start + timedelta(hours=1), currency="CNY"))

    post(lead, report("funded", start + timedelta(hours=2), principal=Decimal("15000.00")))

    cpf = Charge.objects.get(lead=lead, kind="cpf")
    # 15000.00 CNY x 0.13812345 = 2071.85175 -> 2071.85 USD; x 3% = 62.1555 -> 62.16 USD.
    assert (cpf.currency, cpf.amount) == ("USD", Decimal("62.16"))
    assert (cpf.source_amount, cpf.source_currency) == (Decimal("15000.00"), "CNY")
    assert (cpf.exchange_rate_id, cpf.fx_rate) == (in_force.pk, Decimal("0.13812345"))
    # CPA is a USD amount of the schedule: nothing to convert.
    cpa = Charge.objects.get(lead=lead, kind="cpa")
    assert (cpa.currency, cpa.amount, cpa.source_amount) == ("USD", Decimal("35.00"), None)


def test_a_cny_auction_bid_is_converted_into_the_schedules_currency(leads: LeadBuilder) -> None:
    lead = usd_partner_lead(leads)
    Lead.objects.filter(pk=lead.pk).update(bid_amount=Decimal("72.00"), bid_currency="CNY")
    lead.refresh_from_db()
    record_rate(
        from_currency="CNY",
        to_currency="USD",
        rate="0.1381",
        effective_from=lead.delivered_at - timedelta(days=1),
        source="PBOC central parity",
    )

    post(lead, report("accepted", lead.delivered_at + timedelta(hours=1)))

    cpl = Charge.objects.get(lead=lead, kind="cpl")
    # 72.00 CNY x 0.1381 = 9.9432 -> 9.94 USD: never "72.00 USD".
    assert (cpl.amount, cpl.currency, cpl.source_amount, cpl.source_currency) == (
        Decimal("9.94"),
        "USD",
        Decimal("72.00"),
        "CNY",
    )


def test_without_a_rate_the_fee_waits_and_is_booked_once_finance_enters_one(
    leads: LeadBuilder,
) -> None:
    lead = usd_partner_lead(leads)
    start = lead.delivered_at
    post(lead, report("approved", start + timedelta(hours=1)))
    # The opposite direction is no substitute: only the entered direction is used.
    record_rate(
        from_currency="USD",
        to_currency="CNY",
        rate="7.2",
        effective_from=start - timedelta(days=1),
        source="test",
    )

    post(lead, report("funded", start + timedelta(hours=2)))

    assert not Charge.objects.filter(lead=lead, kind="cpf").exists()
    waiting = PendingFee.objects.get(lead=lead)
    assert (waiting.kind, waiting.from_currency, waiting.to_currency) == ("cpf", "CNY", "USD")
    assert waiting.resolved_at is None

    record_rate(
        from_currency="CNY",
        to_currency="USD",
        rate="0.14",
        effective_from=start,
        source="PBOC central parity",
    )
    assert charge_unbilled_events() == 1

    # 15000 x 0.14 = 2100.00 USD x 3% = 63.00
    assert chain(lead, "cpf") == [(1, "charge", Decimal("63.00"))]
    waiting.refresh_from_db()
    assert waiting.resolved_at is not None
    assert charge_unbilled_events() == 0


@pytest.mark.parametrize(
    ("field", "values"),
    [
        ("rate", {"rate": "0"}),
        ("rate", {"rate": "abc"}),
        ("rate", {"rate": "0.123456789"}),
        ("to_currency", {"to_currency": "CNY"}),
        ("from_currency", {"from_currency": "JPY"}),
        ("source", {"source": "  "}),
    ],
)
def test_a_bad_rate_is_refused_naming_the_field(db: None, field: str, values: dict) -> None:
    arguments = {
        "from_currency": "CNY",
        "to_currency": "USD",
        "rate": "0.14",
        "effective_from": timezone.now(),
        "source": "PBOC",
        **values,
    }
    with pytest.raises(ExchangeRateError) as refused:
        record_rate(**arguments)
    assert refused.value.field == field


def test_sandbox_events_book_nothing_and_wait_for_nothing(leads: LeadBuilder) -> None:
    product = ProductFactory()
    schedule(product.partner, currency="USD")
    lead = leads.lead(product=product, is_sandbox=True)

    post(lead, report("approved", lead.delivered_at + timedelta(hours=1)))
    post(lead, report("funded", lead.delivered_at + timedelta(hours=2)))

    assert not Charge.objects.filter(lead=lead).exists()
    assert not PendingFee.objects.filter(lead=lead).exists()


def test_a_rate_that_would_change_a_booked_conversion_is_refused(leads: LeadBuilder) -> None:
    lead = usd_partner_lead(leads)
    start = lead.delivered_at
    record_rate(
        from_currency="CNY",
        to_currency="USD",
        rate="0.14",
        effective_from=start - timedelta(days=10),
        source="PBOC",
    )
    post(lead, report("approved", start + timedelta(hours=1)))
    post(lead, report("funded", start + timedelta(hours=2)))
    booked = Charge.objects.get(lead=lead, kind="cpf")

    with pytest.raises(ExchangeRateError) as refused:
        record_rate(
            from_currency="CNY",
            to_currency="USD",
            rate="0.15",
            effective_from=start,
            source="PBOC, revised",
        )

    assert refused.value.field == "effective_from"
    # From after the booked event it is accepted, and the booked charge is unchanged.
    record_rate(
        from_currency="CNY",
        to_currency="USD",
        rate="0.15",
        effective_from=start + timedelta(hours=3),
        source="PBOC, revised",
    )
    assert Charge.objects.get(pk=booked.pk).amount == booked.amount
