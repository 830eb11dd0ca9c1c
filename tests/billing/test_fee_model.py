"""The reference fee model (tests/billing/fee_model.py) checked against examples computed
by hand from the README's billing rules; the arithmetic is in the comments. No database."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal

import pytest

from tests.billing.fee_model import (
    KNOWN_REASONS,
    Event,
    Lead,
    Model,
    ModelError,
    Rate,
    Schedule,
    Tier,
    to_cents,
)

D = Decimal
LONG_AGO = datetime(2025, 1, 1, tzinfo=UTC)
VAT = D("0.06")


def at(day: int, hour: int = 12, month: int = 3) -> datetime:
    return datetime(2026, month, day, hour, tzinfo=UTC)


def cny(**fees: object) -> Schedule:
    values: dict = {"partner": "P0", "product": None, "currency": "CNY", "effective_from": LONG_AGO}
    values.update(fees)
    return Schedule(**values)


def ledger(model: Model, lead: str, kind: str, chain: str = "") -> list[tuple[str, Decimal]]:
    return [(e.type, e.amount) for e in model.chain_entries((lead, kind, chain))]


def test_to_cents_rounds_half_up_once() -> None:
    assert to_cents(D("41.625")) == D("41.63")
    assert to_cents(D("2.0849")) == D("2.08")
    assert to_cents(D("-0.005")) == D("-0.01")


def test_known_reasons_are_the_readmes_codes() -> None:
    from billing.models import ReturnReason  # the list the README documents

    assert set(ReturnReason.values) == KNOWN_REASONS


def test_marginal_tiers_and_a_late_event_repricing_later_units() -> None:
    # cpl 40; tier from 1: cpl 35; tier from 2 names only cpa, so cpl stays 35.
    model = Model(
        leads=[Lead(f"L{i}", "P0", "P0-a") for i in (1, 2, 3)],
        vat_rate=VAT,
    )
    model.add_schedule(
        cny(cpl=D("40.00"), tiers=(Tier(1, cpl=D("35.00")), Tier(2, cpa=D("200.00"))))
    )
    model.receive(Event("e1", "L1", "accepted", at(5, 10)))  # unit 1: 40
    model.receive(Event("e2", "L2", "accepted", at(5, 11)))  # unit 2: 35
    assert ledger(model, "L1", "cpl") == [("charge", D("40.00"))]
    assert ledger(model, "L2", "cpl") == [("charge", D("35.00"))]
    # e3 happened first: it is unit 1 (40), e1 becomes unit 2 (35), e2 unit 3 (35).
    model.receive(Event("e3", "L3", "accepted", at(5, 9)))
    assert ledger(model, "L1", "cpl") == [
        ("charge", D("40.00")),
        ("reprice", D("-40.00")),
        ("charge", D("35.00")),
    ]
    assert ledger(model, "L2", "cpl") == [("charge", D("35.00"))]
    assert ledger(model, "L3", "cpl") == [("charge", D("40.00"))]
    # The reprice pair is billed at the time of the event that renumbered (e3's).
    assert [e.at for e in model.chain_entries(("L1", "cpl", ""))][1:] == [at(5, 9)] * 2
    assert sum(model.chain_nets().values()) == D("110.00")
    model.check_consistent()


def test_ties_in_time_are_ordered_by_event_id() -> None:
    model = Model(leads=[Lead("L1", "P0", "P0-a"), Lead("L2", "P0", "P0-a")], vat_rate=VAT)
    model.add_schedule(cny(cpl=D("40.00"), tiers=(Tier(1, cpl=D("30.00")),)))
    model.receive(Event("e-b", "L1", "accepted", at(5)))
    model.receive(Event("e-a", "L2", "accepted", at(5)))  # same time, smaller id: unit 1
    assert model.fees()[("L2", "cpl", "")].price == D("40.00")
    assert model.fees()[("L1", "cpl", "")].price == D("30.00")
    assert ledger(model, "L1", "cpl") == [
        ("charge", D("40.00")),
        ("reprice", D("-40.00")),
        ("charge", D("30.00")),
    ]


def test_cpf_is_converted_then_clamped_to_min_and_max() -> None:
    leads = [Lead(f"L{i}", "P0", "P0-a") for i in (1, 2, 3)]
    model = Model(leads=leads, vat_rate=VAT)
    model.add_schedule(
        cny(
            currency="USD",
            cpf_rate=D("0.0300"),
            cpf_min=D("25.00"),
            cpf_max=D("60.00"),
        )
    )
    model.add_rate(Rate("CNY", "USD", D("0.13875"), at(1)))
    # 10000.00 CNY * 0.13875 = 1387.50 USD; * 3% = 41.625 -> 41.63, inside [25, 60].
    model.receive(Event("f1", "L1", "funded", at(5), principal=D("10000.00")))
    # 50000.00 * 0.13875 = 6937.50; * 3% = 208.125 -> 208.13; capped at 60.00.
    model.receive(Event("f2", "L2", "funded", at(6), principal=D("50000.00")))
    # 500.00 * 0.13875 = 69.375 -> 69.38; * 3% = 2.0814 -> 2.08; raised to 25.00.
    model.receive(Event("f3", "L3", "funded", at(7), principal=D("500.00")))
    fees = model.fees()
    assert [fees[(f"L{i}", "cpf", "")].price for i in (1, 2, 3)] == [
        D("41.63"),
        D("60.00"),
        D("25.00"),
    ]
    assert {fee.currency for fee in fees.values()} == {"USD"}
    assert fees[("L1", "cpf", "")].fx_rate == D("0.13875")


def test_cpf_in_the_schedules_currency_is_not_converted() -> None:
    model = Model(leads=[Lead("L1", "P0", "P0-a")], vat_rate=VAT)
    model.add_schedule(cny(cpf_rate=D("0.0325")))
    # 12345.67 * 3.25% = 401.234275 -> 401.23 (no rate needed: both CNY).
    model.receive(Event("f1", "L1", "funded", at(5), principal=D("12345.67")))
    assert model.fees()[("L1", "cpf", "")].price == D("401.23")


def test_rate_in_force_is_the_latest_one_entered_direction_only() -> None:
    model = Model(
        leads=[Lead("L1", "P0", "P0-a", bid=D("100.00"), bid_currency="USD")], vat_rate=VAT
    )
    model.add_schedule(cny(cpl=D("40.00")))
    model.add_rate(Rate("USD", "CNY", D("7.1"), at(1)))
    model.add_rate(Rate("USD", "CNY", D("7.2"), at(5, 12)))  # in force from the event on
    model.add_rate(Rate("USD", "CNY", D("7.3"), at(5, 13)))  # too late for it
    model.add_rate(Rate("CNY", "USD", D("0.5"), at(1)))  # the other direction: never used
    # The auction lead's CPL is its bid, not tier cpl: 100.00 USD * 7.2 = 720.00 CNY.
    model.receive(Event("a1", "L1", "accepted", at(5, 12)))
    fee = model.fees()[("L1", "cpl", "")]
    assert (fee.price, fee.currency, fee.fx_rate) == (D("720.00"), "CNY", D("7.2"))


def test_no_rate_in_force_waits_then_books_at_catch_up() -> None:
    model = Model(leads=[Lead("L1", "P0", "P0-a")], vat_rate=VAT)
    model.add_schedule(cny(currency="USD", cpf_rate=D("0.0200"), revshare_rate=D("0.1000")))
    model.receive(Event("f1", "L1", "funded", at(5), principal=D("9000.00")))
    model.receive(Event("v1", "L1", "revenue", at(8), amount=D("1234.56")))
    assert model.fees()[("L1", "revshare", "2026-03")].status == "needs_rate"
    assert model.fees()[("L1", "revshare", "2026-03")].needs == ("CNY", "USD")
    assert model.entries == []
    model.add_rate(Rate("CNY", "USD", D("0.14"), at(9)))  # after both events: no help
    model.catch_up()
    assert model.entries == []
    model.add_rate(Rate("CNY", "USD", D("0.14"), at(1)))
    model.catch_up()
    # 9000.00 * 0.14 = 1260.00 USD; * 2% = 25.20.
    # 1234.56 * 0.14 = 172.8384 -> 172.84; * 10% = 17.284 -> 17.28 (not tiered).
    assert ledger(model, "L1", "cpf") == [("charge", D("25.20"))]
    assert ledger(model, "L1", "revshare", "2026-03") == [("charge", D("17.28"))]


def test_reversal_re_report_and_reversed_return() -> None:
    model = Model(leads=[Lead("L1", "P0", "P0-a")], vat_rate=VAT)
    model.add_schedule(cny(cpl=D("40.00"), tiers=(Tier(1, cpl=D("30.00")),)))
    model.receive(Event("a1", "L1", "accepted", at(2)))  # unit 1: 40
    model.receive(Event("x1", "L1", "reversal", at(3), reverses="a1"))
    # Reported again: a2 is unit 2 (the reversed a1 still counts): 30.
    model.receive(Event("a2", "L1", "accepted", at(4)))
    model.receive(Event("r1", "L1", "returned", at(5), reason="duplicate"))
    model.receive(Event("x2", "L1", "reversal", at(6), reverses="r1"))
    assert ledger(model, "L1", "cpl") == [
        ("charge", D("40.00")),
        ("reversal", D("-40.00")),
        ("charge", D("30.00")),
        ("credit", D("-30.00")),
        ("charge", D("30.00")),
    ]
    assert model.chain_nets() == {("L1", "cpl", "", "CNY"): D("30.00")}
    # The re-booking is dated when the return was reversed (README, Billing 9).
    assert [e.at for e in model.chain_entries(("L1", "cpl", ""))] == [
        at(2),
        at(3),
        at(4),
        at(5),
        at(6),
    ]


def test_a_pending_first_return_blocks_later_returns_until_it_goes() -> None:
    model = Model(leads=[Lead("L1", "P0", "P0-a")], vat_rate=VAT)
    model.add_schedule(cny(cpl=D("40.00"), cpa=D("250.00")))
    model.receive(Event("a1", "L1", "accepted", at(2)))
    model.receive(Event("p1", "L1", "approved", at(3), amount=D("20000.00")))
    model.receive(Event("r1", "L1", "returned", at(4), reason="changed_mind"))  # to review
    model.receive(Event("r2", "L1", "returned", at(5), reason="duplicate"))
    assert sum(model.chain_nets().values()) == D("290.00")
    model.decide("P0", "r1", approve=False)  # rejected: still credits nothing
    assert sum(model.chain_nets().values()) == D("290.00")
    # r1 reversed: r2 is the first standing return now, and it is creditable.
    model.receive(Event("x1", "L1", "reversal", at(6), reverses="r1"))
    assert ledger(model, "L1", "cpa") == [("charge", D("250.00")), ("credit", D("-250.00"))]
    assert model.chain_entries(("L1", "cpa", ""))[1].at == at(5)  # r2's time
    assert model.chain_nets() == {}


def test_approved_review_credits_and_fees_after_a_return_are_never_charged() -> None:
    model = Model(leads=[Lead("L1", "P0", "P0-a")], vat_rate=VAT)
    model.add_schedule(cny(cpl=D("40.00"), cpa=D("250.00")))
    model.receive(Event("a1", "L1", "accepted", at(2)))
    model.receive(Event("r1", "L1", "returned", at(4), reason="changed_mind"))
    model.decide("P0", "r1", approve=True)
    assert ledger(model, "L1", "cpl") == [("charge", D("40.00")), ("credit", D("-40.00"))]
    # Approved after the return: due on a returned lead, so never charged.
    model.receive(Event("p1", "L1", "approved", at(5), amount=D("20000.00")))
    assert ledger(model, "L1", "cpa") == []
    assert model.fees()[("L1", "cpa", "")].status == "credited"


def test_schedule_versions_product_schedule_and_auction_lead_without_schedule() -> None:
    leads = [
        Lead("L1", "P0", "P0-a"),
        Lead("L2", "P0", "P0-a"),
        Lead("L3", "P0", "P0-b"),
        Lead("L4", "P0", "P0-b"),
        Lead("L5", "P1", "P1-a", bid=D("88.00"), bid_currency="USD"),
    ]
    model = Model(leads=leads, vat_rate=VAT)
    model.add_schedule(cny(cpl=D("40.00"), effective_to=at(15, 0)))
    model.add_schedule(cny(cpl=D("50.00"), effective_from=at(15, 0)))
    model.add_schedule(
        cny(product="P0-b", cpl=D("70.00"), effective_from=at(1, 0), effective_to=at(10, 0))
    )
    model.receive(Event("e1", "L1", "accepted", at(14, 23)))  # v1: 40
    model.receive(Event("e2", "L2", "accepted", at(15, 0)))  # v2 from exactly then: 50
    model.receive(Event("e3", "L3", "accepted", at(5)))  # the product's own: 70
    model.receive(Event("e4", "L4", "accepted", at(10, 0)))  # product's ended (exclusive): 40
    # P1 has no schedule: the auction lead's CPL is its bid, in USD; its CPA waits.
    model.receive(Event("e5", "L5", "accepted", at(6)))
    model.receive(Event("e6", "L5", "approved", at(7), amount=D("5000.00")))
    fees = model.fees()
    assert [fees[(f"L{i}", "cpl", "")].price for i in range(1, 5)] == [
        D("40.00"),
        D("50.00"),
        D("70.00"),
        D("40.00"),
    ]
    assert (fees[("L5", "cpl", "")].price, fees[("L5", "cpl", "")].currency) == (D("88.00"), "USD")
    assert fees[("L5", "cpa", "")].status == "no_schedule"
    assert model.chain_nets()[("L5", "cpl", "", "USD")] == D("88.00")


def test_sandbox_leads_are_never_billed_nor_numbered() -> None:
    model = Model(
        leads=[Lead("S1", "P0", "P0-a", sandbox=True), Lead("L1", "P0", "P0-a")], vat_rate=VAT
    )
    model.add_schedule(cny(cpl=D("40.00"), tiers=(Tier(1, cpl=D("30.00")),)))
    model.receive(Event("s1", "S1", "accepted", at(5, 8)))
    model.receive(Event("a1", "L1", "accepted", at(5, 9)))
    assert model.chain_nets() == {("L1", "cpl", "", "CNY"): D("40.00")}  # unit 1


def test_invoices_credit_notes_and_balance() -> None:
    model = Model(leads=[Lead("L1", "P0", "P0-a"), Lead("L2", "P0", "P0-a")], vat_rate=VAT)
    model.add_schedule(cny(cpl=D("40.00"), cpa=D("250.00")))
    model.receive(Event("a1", "L1", "accepted", at(10, month=2)))
    model.receive(Event("p1", "L1", "approved", at(12, month=2), amount=D("9000.00")))
    model.invoice(date(2026, 2, 1))
    # February: 40 + 250 = 290.00; VAT 6% = 17.40; total 307.40.
    feb = model.invoices[("P0", "CNY", date(2026, 2, 1))]
    assert (feb.subtotal, feb.tax, feb.total) == (D("290.00"), D("17.40"), D("307.40"))
    # A return dated in February reported after February was invoiced: its credits are
    # billed in March (the first month not invoiced), by a credit note on February's.
    model.receive(Event("r1", "L1", "returned", at(14, month=2), reason="duplicate"))
    assert {e.month for e in model.entries if e.type == "credit"} == {date(2026, 3, 1)}
    model.receive(Event("a2", "L2", "accepted", at(3)))  # March: 40
    model.invoice(date(2026, 3, 1))
    (note,) = model.credit_notes
    assert (note.invoice_period, note.subtotal, note.tax, note.total) == (
        date(2026, 2, 1),
        D("290.00"),
        D("17.40"),
        D("307.40"),
    )
    march = model.invoices[("P0", "CNY", date(2026, 3, 1))]
    assert (march.subtotal, march.tax, march.total) == (D("40.00"), D("2.40"), D("42.40"))
    # Balance: 307.40 + 42.40 invoiced - 307.40 credited = 42.40; paid: 0.
    assert model.balance("P0", "CNY") == D("42.40")
    model.pay("P0", "CNY", D("42.40"))
    assert model.balance("P0", "CNY") == D("0.00")


def test_vat_is_rounded_half_up_on_the_subtotal() -> None:
    model = Model(leads=[Lead(f"L{i}", "P0", "P0-a") for i in (1, 2)], vat_rate=VAT)
    model.add_schedule(cny(cpl=D("20.25")))
    model.receive(Event("a1", "L1", "accepted", at(2)))
    model.receive(Event("a2", "L2", "accepted", at(3)))
    model.invoice(date(2026, 3, 1))
    # 2 * 20.25 = 40.50; * 6% = 2.43 exactly. A single 20.25 would be 1.215 -> 1.22.
    invoice = model.invoices[("P0", "CNY", date(2026, 3, 1))]
    assert (invoice.subtotal, invoice.tax, invoice.total) == (D("40.50"), D("2.43"), D("42.93"))


def test_revenue_share_chains_per_period_and_a_corrected_revenue() -> None:
    model = Model(leads=[Lead("L1", "P0", "P0-a")], vat_rate=VAT)
    model.add_schedule(cny(cpf_rate=D("0.0300"), revshare_rate=D("0.1250")))
    model.receive(Event("f1", "L1", "funded", at(2, month=2), principal=D("6000.00")))
    model.receive(Event("v1", "L1", "revenue", at(28, month=2), amount=D("100.10")))
    model.receive(Event("v2", "L1", "revenue", at(5), amount=D("99.99")))
    # 100.10 * 12.5% = 12.5125 -> 12.51; 99.99 * 12.5% = 12.49875 -> 12.50.
    model.receive(Event("x1", "L1", "reversal", at(6), reverses="v2"))
    model.receive(Event("v3", "L1", "revenue", at(7), amount=D("80.00"), period="2026-03"))
    assert ledger(model, "L1", "revshare", "2026-02") == [("charge", D("12.51"))]
    assert ledger(model, "L1", "revshare", "2026-03") == [
        ("charge", D("12.50")),
        ("reversal", D("-12.50")),
        ("charge", D("10.00")),
    ]


def test_the_model_refuses_to_guess_a_reprice_without_an_event() -> None:
    model = Model(
        leads=[Lead("L1", "P0", "P0-a", bid=D("10.00"), bid_currency="USD")], vat_rate=VAT
    )
    model.receive(Event("a1", "L1", "accepted", at(2)))  # no schedule: 10.00 USD
    model.add_schedule(cny(cpl=D("40.00")))
    model.add_rate(Rate("USD", "CNY", D("7"), at(1)))
    with pytest.raises(ModelError):
        model.catch_up()


def test_month_boundaries_are_utc() -> None:
    model = Model(leads=[Lead("L1", "P0", "P0-a")], vat_rate=VAT)
    model.add_schedule(cny(cpl=D("40.00")))
    # 2026-04-01 07:30 in Shanghai (UTC+8) is still March in UTC.
    shanghai = timezone(timedelta(hours=8))
    model.receive(Event("a1", "L1", "accepted", datetime(2026, 4, 1, 7, 30, tzinfo=shanghai)))
    assert model.month_totals() == {("P0", "CNY", date(2026, 3, 1)): D("40.00")}
