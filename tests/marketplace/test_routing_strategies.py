"""Routing carries out the referral's strategy, and records why: each candidate's
eligibility or reason codes, posteriors, score and rank, the strategy and arm, the
winners."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

import pytest

from marketplace import fee_cards, learning, routing, waterfall
from marketplace.models import Auction, Lead, LeadStatus, Referral, RoutingDecision
from marketplace.strategy_spec import StrategyChoice, StrategyKind, StrategySpec
from partners.models import DeliveryMode, Product
from tests.factories import PartnerFactory, ProductFactory

pytestmark = pytest.mark.django_db


def _product(cpl: str, **extra: Any) -> Product:
    product = ProductFactory(partner=PartnerFactory(), **extra)
    fee_cards.set_fee_card(
        product_id=product.id,
        currency="CNY",
        cpl=Decimal(cpl),
        cpa=Decimal(0),
        cpf_rate=Decimal(0),
        cpf_min=Decimal(0),
        cpf_max=None,
        to_platform=Decimal(1),
    )
    return product


@pytest.fixture
def strategy(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., None]]:
    """``strategy(kind, **spec fields)``: route every referral by this spec, as an arm."""

    def use(kind: str, **fields: Any) -> None:
        spec = StrategySpec(key=f"test-{kind}", version=3, kind=kind, explore=False, **fields)
        choice = StrategyChoice(spec=spec, experiment_key="exp", arm_key="b", bucket_version=2)
        monkeypatch.setattr(routing, "choose_strategy", lambda **_: choice)

    yield use
    learning.inputs.invalidate()


def _leads(referral: Referral) -> set[Any]:
    return set(Lead.objects.filter(referral=referral).values_list("product_id", flat=True))


def test_product_defaults_route_as_before_and_record_the_decision(
    make_referral: Callable[..., Referral],
) -> None:
    cheap = _product("10", apr_min=Decimal("0.10"))
    dear = _product("90", apr_min=Decimal("0.20"))

    referral = make_referral()

    assert _leads(referral) == {cheap.id, dear.id}
    decision = RoutingDecision.objects.get(referral=referral)
    assert (decision.strategy_key, decision.strategy_kind) == ("default", "product_defaults")
    assert set(decision.winners) == {str(cheap.id), str(dear.id)}
    entries = {entry["product"]: entry for entry in decision.candidates}
    assert entries[str(dear.id)]["rank"] == 1  # by value, though the applicant sees it second
    assert entries[str(dear.id)]["means"]["accept"] == pytest.approx(0.8)
    assert entries[str(cheap.id)]["eligible"] and entries[str(cheap.id)]["chosen"]


def test_exclusive_best_value_gives_the_lead_to_the_highest_expected_value(
    make_referral: Callable[..., Referral], strategy: Callable[..., None]
) -> None:
    strategy(StrategyKind.EXCLUSIVE_BEST_VALUE)
    _product("20", apr_min=Decimal("0.10"))
    best = _product("70", apr_min=Decimal("0.20"))

    referral = make_referral()

    assert _leads(referral) == {best.id}
    decision = RoutingDecision.objects.get(referral=referral)
    assert (decision.experiment_key, decision.arm_key, decision.bucket_version) == ("exp", "b", 2)
    assert (decision.strategy_key, decision.strategy_version) == ("test-exclusive_best_value", 3)
    assert decision.winners == [str(best.id)]
    top = decision.candidates[0]
    assert top["product"] == str(best.id) and top["expected_value"] == "56.00"  # 0.8 x 70


def test_shared_broadcast_sends_to_the_best_n_by_score(
    make_referral: Callable[..., Referral], strategy: Callable[..., None]
) -> None:
    strategy(StrategyKind.SHARED_BROADCAST, max_partners=2)
    low = _product("10")
    middle = _product("50")
    high = _product("80")

    referral = make_referral()

    assert _leads(referral) == {middle.id, high.id}
    assert low.id not in _leads(referral)


def test_a_waterfall_offers_one_at_a_time_and_falls_to_the_next_on_a_rejected_post(
    make_referral: Callable[..., Referral], strategy: Callable[..., None]
) -> None:
    strategy(StrategyKind.WATERFALL, max_partners=2)
    third = _product("10")
    second = _product("50")
    first = _product("80")

    referral = make_referral()
    lead = Lead.objects.get(referral=referral)
    assert lead.product_id == first.id
    Lead.objects.filter(pk=lead.pk).update(status=LeadStatus.POST_REJECTED)

    nxt = waterfall.fall_back(lead_id=lead.id)

    assert [new.product_id for new in nxt] == [second.id]
    assert waterfall.fall_back(lead_id=lead.id) == []  # run twice: nothing more
    Lead.objects.filter(pk=nxt[0].pk).update(status=LeadStatus.POST_REJECTED)
    assert waterfall.fall_back(lead_id=nxt[0].id) == []  # at most max_partners in all
    assert _leads(referral) == {first.id, second.id}
    assert third.id not in _leads(referral)
    decision = RoutingDecision.objects.get(referral=referral)
    assert decision.winners == [str(first.id), str(second.id)]


def test_a_ping_post_auction_pings_only_ping_post_candidates(
    make_referral: Callable[..., Referral], strategy: Callable[..., None]
) -> None:
    strategy(StrategyKind.PING_POST_AUCTION, max_partners=1)
    _product("80")
    pinged = _product("20", delivery_mode=DeliveryMode.PING_POST, ping_url="http://127.0.0.1:9/p")

    referral = make_referral()

    assert _leads(referral) == set()
    auction = Auction.objects.get(referral=referral)
    assert auction.candidate_product_ids == [str(pinged.id)]
    assert (auction.mode, auction.max_winners) == ("exclusive", 1)


def test_a_screened_out_candidate_is_recorded_with_its_reason_code(
    make_referral: Callable[..., Referral],
) -> None:
    product = _product("30")
    make_referral(national_id="110101199003071234")

    again = make_referral(national_id="110101199003071234")  # same person, in the window

    decision = RoutingDecision.objects.get(referral=again)
    assert decision.candidates == [
        {
            "product": str(product.id),
            "partner": str(product.partner_id),
            "partner_name": product.partner.name,
            "eligible": False,
            "reasons": ["dedupe"],
            "means": None,
            "sampled": None,
            "expected_value": None,
            "score": None,
            "rank": None,
            "chosen": False,
            "waterfall": False,
        }
    ]


def test_thompson_draws_come_from_the_injected_generator(
    make_referral: Callable[..., Referral], monkeypatch: pytest.MonkeyPatch
) -> None:
    _product("30")
    _product("40")
    monkeypatch.setattr(routing, "_RNG", random.Random(5))
    first = RoutingDecision.objects.get(referral=make_referral()).candidates
    monkeypatch.setattr(routing, "_RNG", random.Random(5))
    second = RoutingDecision.objects.get(referral=make_referral()).candidates

    def draws(entries: list[dict[str, Any]]) -> list[Any]:
        return sorted(str(e["sampled"]) for e in entries)

    assert draws(first) == draws(second)
    assert all(0 <= v <= 1 for e in first for v in e["sampled"].values())
