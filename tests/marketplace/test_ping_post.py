"""Ping-post auctions against the real partner simulator on loopback: anonymised pings in
parallel under per-partner timeouts and an auction budget, errors recorded with reasons,
winners by bid, the post (the only disclosure) to winners, fallback to the next bidder."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from django.conf import settings as django_settings
from rest_framework.test import APIClient

from consent.models import Disclosure
from marketplace import auctions, pings
from marketplace.models import (
    AttemptOutcome,
    Auction,
    AuctionMode,
    AuctionStatus,
    Lead,
    LeadStatus,
    OutboxMessage,
    PingAttempt,
    PingAward,
    Referral,
    ReferralStatus,
)
from partners.models import DeliveryMode
from tests.conftest import SimulatedPartner, partner_client
from tests.factories import referral_payload
from tests.marketplace.conftest import api_post, pii_strings

pytestmark = pytest.mark.django_db

PING_KEYS = {"type", "ping_id", *pings.PING_FIELDS}


@pytest.fixture(autouse=True)
def _fast(settings: Any) -> None:
    # Generous: the answers are quick, and a loaded CI machine must not turn bids into
    # timeouts. Tests about time set their own limits.
    settings.AUCTION_BUDGET_MS = 1500
    settings.DELIVERY_MAX_RETRIES = 0


@pytest.fixture
def bidder(
    simulator_factory: Callable[..., SimulatedPartner],
) -> Callable[..., SimulatedPartner]:
    """A simulated ping-post partner: ``bidder(bid="35.00", exclusive=..., apr_min=...,
    timeout_ms=..., **simulator knobs)``; ``bid=None`` keeps the simulator's bid range."""

    def make(
        bid: str | None = "30.00",
        *,
        exclusive: bool = False,
        apr_min: str = "0.1500",
        timeout_ms: int = 1000,
        post_url: str | None = None,
        **knobs: Any,
    ) -> SimulatedPartner:
        if bid is not None:
            knobs.update(bid_min=Decimal(bid), bid_max=Decimal(bid))
        sim = simulator_factory(**knobs)
        product = sim.product
        product.delivery_mode = DeliveryMode.PING_POST
        product.ping_url = sim.simulator.url_for(sim.partner.slug, "ping")
        product.ping_timeout_ms = timeout_ms
        product.exclusive = exclusive
        product.apr_min = Decimal(apr_min)
        if post_url is not None:
            product.post_url = post_url
        product.save()
        return sim

    return make


@pytest.fixture
def refer(
    source_client: APIClient, django_capture_on_commit_callbacks: Any
) -> Callable[..., Referral]:
    """POST a referral and run what follows its commit (auction, posts, webhooks)."""

    def post(payload: dict[str, Any] | None = None) -> Referral:
        with django_capture_on_commit_callbacks(execute=True):
            response = api_post(source_client, payload or referral_payload())
        assert response.status_code == 201, response.content
        return Referral.objects.get(pk=response.json()["id"])

    return post


def counters(sim: SimulatedPartner) -> dict[str, int]:
    return sim.simulator.stats()[sim.partner.slug]


def ping_of(auction: Auction, sim: SimulatedPartner) -> PingAttempt:
    return auction.pings.get(partner=sim.partner)


def lead_of(referral: Referral, sim: SimulatedPartner) -> Lead | None:
    return Lead.objects.filter(referral=referral, partner=sim.partner).first()


# --- Pings: anonymised, signed ----------------------------------------------------------------


def test_pings_carry_only_anonymised_bands_and_no_personal_data(
    bidder: Callable[..., SimulatedPartner], refer: Callable[..., Referral]
) -> None:
    sims = [bidder("20.00"), bidder("40.00")]
    payload = referral_payload()

    refer(payload)

    for sim in sims:
        assert counters(sim)["pii_in_ping"] == 0
        assert counters(sim)["bad_signatures"] == 0  # verified with standardwebhooks
        (ping,) = sim.simulator.received(sim.partner.slug)["pings"]
        assert set(ping) == PING_KEYS
        assert ping["type"] == "lead.ping"
        assert {k: ping[k] for k in ("risk_tier", "amount", "currency", "term_months")} == {
            "risk_tier": "R5",
            "amount": "8000.00",
            "currency": "CNY",
            "term_months": 12,
        }
        assert (ping["region"], ping["purpose"]) == ("CN-GD", "consumption")
        assert ping["age_band"] in {"25-34", "35-44"}  # born 1990
        assert ping["income_band"] == "5000-9999"  # 8,500 a month, as a band
        text = json.dumps(ping, ensure_ascii=False)
        for value in [*pii_strings(payload), "1990-03-07", "8500"]:
            assert value not in text


def test_only_winners_get_the_post_and_a_disclosure(
    bidder: Callable[..., SimulatedPartner], refer: Callable[..., Referral]
) -> None:
    low, high = bidder("20.00", exclusive=True), bidder("45.00", exclusive=True)

    referral = refer()

    assert counters(high)["posts"] == 1 and counters(low)["posts"] == 0
    assert list(Disclosure.objects.values_list("partner_id", flat=True)) == [high.partner.id]
    assert set(referral.grant.recipients.values_list("id", flat=True)) == {high.partner.id}


def test_the_intake_queues_one_dispatch_by_id_after_commit_and_does_not_run_the_auction(
    bidder: Callable[..., SimulatedPartner],
    source_client: APIClient,
    monkeypatch: pytest.MonkeyPatch,
    django_capture_on_commit_callbacks: Any,
) -> None:
    sim = bidder(latency_ms=50)
    queued: list[tuple[Any, ...]] = []
    monkeypatch.setattr(
        "marketplace.tasks.dispatch_referral.apply_async",
        lambda args, task_id, **options: queued.append((args, task_id)),
    )

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = api_post(source_client, referral_payload())
        assert queued == []  # nothing before commit

    assert response.status_code == 201
    (message,) = OutboxMessage.objects.all()  # written in the intake's transaction
    for callback in callbacks:
        callback()
    auction = Auction.objects.get()
    # Ids only (no personal data in task arguments); the task id is the message's.
    assert queued == [([response.json()["id"]], str(message.id))]
    assert (message.task, message.queue) == ("marketplace.tasks.dispatch_referral", "ping")
    assert counters(sim)["pings"] == 0
    assert auction.status == AuctionStatus.PENDING
    assert auction.budget_ms == 1500
    assert django_settings.CELERY_TASK_ROUTES["marketplace.tasks.dispatch_referral"] == {
        "queue": "ping"
    }


# --- Winners --------------------------------------------------------------------------------


def test_exclusive_auction_goes_to_the_highest_bid(
    bidder: Callable[..., SimulatedPartner], refer: Callable[..., Referral]
) -> None:
    sims = [bidder(bid, exclusive=True) for bid in ("20.00", "45.00", "30.00")]

    referral = refer()

    auction = referral.auction
    assert (auction.mode, auction.max_winners) == (AuctionMode.EXCLUSIVE, 1)
    assert auction.status == AuctionStatus.AWARDED
    (lead,) = Lead.objects.filter(referral=referral)
    assert lead.partner_id == sims[1].partner.id
    assert lead.bid_amount == Decimal("45.00")
    assert lead.status == LeadStatus.DELIVERED
    assert lead.delivery_mode == DeliveryMode.PING_POST
    assert [ping_of(auction, s).rank for s in sims] == [3, 1, 2]
    assert ping_of(auction, sims[1]).lead == lead
    assert all(counters(s)["pings"] == 1 for s in sims)


def test_a_tie_goes_to_the_applicants_cheaper_product(
    bidder: Callable[..., SimulatedPartner], refer: Callable[..., Referral]
) -> None:
    dear = bidder("35.00", exclusive=True, apr_min="0.2000")
    cheap = bidder("35.00", exclusive=True, apr_min="0.1200")

    referral = refer()

    assert Lead.objects.get(referral=referral).partner_id == cheap.partner.id
    assert ping_of(referral.auction, dear).rank == 2


def test_shared_auction_goes_to_the_top_n_bidders(
    bidder: Callable[..., SimulatedPartner], refer: Callable[..., Referral], settings: Any
) -> None:
    settings.MAX_PARTNERS_PER_REFERRAL = 2
    sims = [bidder(bid) for bid in ("10.00", "50.00", "25.00", "40.00")]

    referral = refer()

    assert (referral.auction.mode, referral.auction.max_winners) == (AuctionMode.SHARED, 2)
    won = {lead.partner_id: lead.bid_amount for lead in Lead.objects.filter(referral=referral)}
    assert won == {sims[1].partner.id: Decimal("50.00"), sims[3].partner.id: Decimal("40.00")}
    assert counters(sims[0])["posts"] == counters(sims[2])["posts"] == 0


def test_direct_post_partners_get_their_post_beside_the_auction(
    bidder: Callable[..., SimulatedPartner],
    simulator_factory: Callable[..., SimulatedPartner],
    refer: Callable[..., Referral],
    settings: Any,
) -> None:
    settings.MAX_PARTNERS_PER_REFERRAL = 2
    direct = simulator_factory()
    low, high = bidder("15.00"), bidder("25.00")

    referral = refer()

    assert referral.status == ReferralStatus.DISTRIBUTED
    direct_lead = lead_of(referral, direct)
    assert direct_lead is not None and direct_lead.status == LeadStatus.DELIVERED
    assert direct_lead.bid_amount is None and direct_lead.auction is None
    assert counters(direct)["pings"] == 0
    # One place left for the auction: the best bidder's.
    assert referral.auction.max_winners == 1
    assert lead_of(referral, high) is not None and lead_of(referral, low) is None


def test_no_bid_leaves_the_referral_unmatched(
    bidder: Callable[..., SimulatedPartner], refer: Callable[..., Referral]
) -> None:
    sims = [bidder(ping_reject_rate=1.0), bidder(ping_reject_rate=1.0)]

    referral = refer()

    referral.refresh_from_db()
    assert referral.auction.status == AuctionStatus.NO_BIDS
    assert (referral.status, referral.status_reason) == (
        ReferralStatus.NO_MATCH,
        "no ping-post partner bid",
    )
    assert not Lead.objects.filter(referral=referral).exists()
    for sim in sims:
        ping = ping_of(referral.auction, sim)
        assert ping.outcome == AttemptOutcome.FAILURE
        assert ping.reason in {"no_appetite", "capacity", "price_floor"}
    assert not Disclosure.objects.exists()


# --- Fallback -------------------------------------------------------------------------------


def test_post_rejected_by_the_winner_falls_back_to_the_next_bidder(
    bidder: Callable[..., SimulatedPartner], refer: Callable[..., Referral]
) -> None:
    fickle = bidder("50.00", exclusive=True, accept_rate=0.0)
    steady = bidder("30.00", exclusive=True)
    third = bidder("10.00", exclusive=True)

    referral = refer()

    first, second = lead_of(referral, fickle), lead_of(referral, steady)
    assert first is not None and first.status == LeadStatus.POST_REJECTED
    assert second is not None and second.status == LeadStatus.DELIVERED
    assert second.bid_amount == Decimal("30.00")
    assert lead_of(referral, third) is None
    auction = referral.auction
    assert ping_of(auction, fickle).award == PingAward.POST_FAILED
    assert ping_of(auction, steady).award == PingAward.WON
    assert ping_of(auction, third).award == PingAward.NONE
    # Both winners in turn received the post (a disclosure each), nobody else.
    assert set(Disclosure.objects.values_list("partner_id", flat=True)) == {
        fickle.partner.id,
        steady.partner.id,
    }


def test_a_post_that_fails_for_good_falls_back_after_its_retries(
    bidder: Callable[..., SimulatedPartner], refer: Callable[..., Referral], settings: Any
) -> None:
    settings.DELIVERY_MAX_RETRIES = 1
    unreachable = bidder("50.00", exclusive=True, post_url="http://127.0.0.1:9/post")
    steady = bidder("30.00", exclusive=True)

    referral = refer()

    lost = lead_of(referral, unreachable)
    assert lost is not None and lost.status == LeadStatus.DELIVERY_FAILED
    assert lost.delivery_attempts == 2  # the first try and its retry, then the fallback
    delivered = lead_of(referral, steady)
    assert delivered is not None and delivered.status == LeadStatus.DELIVERED


def test_fallback_stops_when_bidders_run_out(
    bidder: Callable[..., SimulatedPartner], refer: Callable[..., Referral]
) -> None:
    sims = [bidder(bid, exclusive=True, accept_rate=0.0) for bid in ("50.00", "30.00")]

    referral = refer()

    statuses = sorted(Lead.objects.filter(referral=referral).values_list("status", flat=True))
    assert statuses == [LeadStatus.POST_REJECTED, LeadStatus.POST_REJECTED]
    assert {ping_of(referral.auction, s).award for s in sims} == {PingAward.POST_FAILED}


def test_fallback_is_a_no_op_the_second_time(
    bidder: Callable[..., SimulatedPartner], refer: Callable[..., Referral]
) -> None:
    fickle = bidder("50.00", exclusive=True, accept_rate=0.0)
    bidder("30.00", exclusive=True)
    bidder("10.00", exclusive=True)
    referral = refer()
    lost = lead_of(referral, fickle)
    assert lost is not None

    assert auctions.fall_back(lead_id=lost.id) == []

    assert Lead.objects.filter(referral=referral).count() == 2


def test_an_auction_runs_once(
    bidder: Callable[..., SimulatedPartner], refer: Callable[..., Referral]
) -> None:
    sim = bidder()
    referral = refer()

    assert auctions.run(auction_id=referral.auction.id).status == "skipped"

    assert counters(sim)["pings"] == 1
    assert referral.auction.pings.count() == 1


# --- Timeouts and errors --------------------------------------------------------------------


def test_a_hanging_partner_does_not_delay_the_auction_beyond_its_budget(
    bidder: Callable[..., SimulatedPartner], refer: Callable[..., Referral], settings: Any
) -> None:
    settings.AUCTION_BUDGET_MS = 300
    hanging = bidder("90.00", timeout_ms=5000, timeout_rate=1.0, hang_seconds=10)
    quick = bidder("20.00", latency_ms=20)

    started = time.monotonic()
    referral = refer()
    elapsed_ms = (time.monotonic() - started) * 1000

    auction = Auction.objects.get(referral=referral)
    assert auction.wall_ms is not None and 300 <= auction.wall_ms < 300 + 250
    ping = ping_of(auction, hanging)
    assert ping.outcome == AttemptOutcome.ERROR
    assert ping.reason == "timed out (auction budget)"
    assert ping.http_status is None
    assert ping.latency_ms < 300 + 150
    assert lead_of(referral, quick) is not None
    assert elapsed_ms < 3000  # intake, auction and the winner's post together


def test_each_ping_is_bounded_by_its_own_timeout(
    bidder: Callable[..., SimulatedPartner], refer: Callable[..., Referral], settings: Any
) -> None:
    settings.AUCTION_BUDGET_MS = 3000
    slow = bidder("90.00", timeout_ms=100, latency_ms=1000)
    quick = bidder("20.00", timeout_ms=1000)

    referral = refer()

    auction = referral.auction
    ping = ping_of(auction, slow)
    assert (ping.outcome, ping.reason) == (AttemptOutcome.ERROR, "timed out (ping timeout 100 ms)")
    assert ping.latency_ms < 100 + 150
    assert auction.wall_ms is not None and auction.wall_ms < 1000
    assert lead_of(referral, quick) is not None


class _RedirectHandler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(302)
        self.send_header("Location", "/elsewhere")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def redirect_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _RedirectHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/ping"
    server.shutdown()
    server.server_close()


def test_bad_answers_are_errors_with_reasons_and_the_good_bidder_wins(
    bidder: Callable[..., SimulatedPartner],
    refer: Callable[..., Referral],
    redirect_url: str,
) -> None:
    garbage = bidder("90.00", garbage_rate=1.0)
    http500 = bidder("90.00", error_rate=1.0)
    hanging = bidder("90.00", timeout_ms=200, timeout_rate=1.0, hang_seconds=10)
    redirect = bidder("90.00")
    refused = bidder("90.00")
    unsafe = bidder("90.00")
    good = bidder("20.00")
    for sim, url in [
        (redirect, redirect_url),
        (refused, "http://127.0.0.1:9/ping"),
        (unsafe, "ftp://127.0.0.1/ping"),
    ]:
        sim.product.ping_url = url
        sim.product.save()

    referral = refer()

    auction = referral.auction
    reasons = {
        name: (ping_of(auction, sim).outcome, ping_of(auction, sim).reason)
        for name, sim in [
            ("garbage", garbage),
            ("http500", http500),
            ("hanging", hanging),
            ("redirect", redirect),
            ("refused", refused),
            ("unsafe", unsafe),
        ]
    }
    assert reasons == {
        "garbage": (AttemptOutcome.ERROR, "response is not JSON"),
        "http500": (AttemptOutcome.ERROR, "http 500"),
        "hanging": (AttemptOutcome.ERROR, "timed out (ping timeout 200 ms)"),
        "redirect": (AttemptOutcome.ERROR, "redirect 302 not followed"),
        "refused": (AttemptOutcome.ERROR, "ConnectError"),
        "unsafe": (AttemptOutcome.ERROR, "partner URLs must be absolute http(s) URLs"),
    }
    assert ping_of(auction, http500).http_status == 500
    assert ping_of(auction, redirect).http_status == 302
    assert counters(unsafe)["pings"] == 0  # checked before any ping
    (lead,) = Lead.objects.filter(referral=referral)
    assert lead.partner_id == good.partner.id


def test_a_bid_in_another_currency_is_an_error_never_a_relabelled_price(
    bidder: Callable[..., SimulatedPartner], refer: Callable[..., Referral]
) -> None:
    dollars = bidder("90.00", currency="USD")  # 90 USD is not 90 CNY
    yuan = bidder("20.00")  # states the ping's currency, CNY

    referral = refer()

    auction = referral.auction
    refused = ping_of(auction, dollars)
    assert (refused.outcome, refused.bid, refused.bid_currency, refused.rank) == (
        AttemptOutcome.ERROR,
        None,
        "",
        None,
    )
    assert refused.reason == (
        "bid currency 'USD' is not the ping's currency CNY: bids are in the ping's currency"
    )
    won = ping_of(auction, yuan)
    assert (won.bid, won.bid_currency, won.rank) == (Decimal("20.00"), "CNY", 1)
    (lead,) = Lead.objects.filter(referral=referral)
    assert (lead.partner_id, lead.bid_amount, lead.bid_currency) == (
        yuan.partner.id,
        Decimal("20.00"),
        "CNY",
    )
    shown = partner_client(yuan.partner).get(f"/api/v1/partner/leads/{lead.id}").json()
    assert (shown["bid_amount"], shown["bid_currency"]) == ("20.00", "CNY")


def test_pings_name_the_currency_and_a_bid_that_leaves_it_out_is_in_it(
    bidder: Callable[..., SimulatedPartner], refer: Callable[..., Referral]
) -> None:
    sim = bidder("33.00")
    payload = referral_payload()

    referral = refer(payload)

    (ping,) = counters_pings(sim)
    assert ping["currency"] == payload["loan"]["currency"] == referral.currency
    lead = Lead.objects.get(referral=referral)
    assert (lead.bid_amount, lead.bid_currency) == (Decimal("33.00"), referral.currency)
    assert pings.parse_ping_response(
        _response(200, b'{"decision":"bid","bid":"33.00"}'), currency="HKD"
    ) == (AttemptOutcome.SUCCESS, "", Decimal("33.00"))


def counters_pings(sim: SimulatedPartner) -> list[dict[str, Any]]:
    return sim.simulator.received(sim.partner.slug)["pings"]


def test_private_partner_urls_are_refused_before_any_ping_when_not_allowed(
    bidder: Callable[..., SimulatedPartner], refer: Callable[..., Referral], settings: Any
) -> None:
    sim = bidder()
    settings.ALLOW_PRIVATE_PARTNER_URLS = False

    referral = refer()

    assert counters(sim)["pings"] == 0
    ping = ping_of(referral.auction, sim)
    assert ping.outcome == AttemptOutcome.ERROR
    assert "https" in ping.reason
    assert referral.auction.status == AuctionStatus.NO_BIDS


def _response(status: int, body: bytes, **headers: str) -> httpx.Response:
    return httpx.Response(status, content=body, headers=headers)


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (200, b'{"decision":"bid","bid":"35.00"}', ("success", "", Decimal("35.00"))),
        (200, b'{"decision":"bid","bid":35}', ("success", "", Decimal("35.00"))),
        (200, b'{"decision":"accept"}', ("success", "accepted at the fee schedule", None)),
        (200, b'{"decision":"reject","reason":"capacity"}', ("failure", "capacity", None)),
        (200, b'{"decision":"reject"}', ("failure", "rejected", None)),
        (200, b'{"decision":"bid","bid":"-1"}', ("error", "bid is not", None)),
        (200, b'{"decision":"bid","bid":"0"}', ("error", "bid is not", None)),
        (200, b'{"decision":"bid","bid":"1e9"}', ("error", "bid is not", None)),
        (200, b'{"decision":"bid","bid":"NaN"}', ("error", "bid is not", None)),
        (200, b'{"decision":"bid","bid":"12.345"}', ("error", "bid is not", None)),
        (200, b'{"decision":"bid","bid":true}', ("error", "bid is not", None)),
        (200, b'{"decision":"bid"}', ("error", "bid is not", None)),
        (200, b'{"decision":"maybe"}', ("error", "response has no decision", None)),
        (200, b"[1, 2]", ("error", "response is not a JSON object", None)),
        (200, b"{not json", ("error", "response is not JSON", None)),
        (200, b"\xff\xfe", ("error", "response is not JSON", None)),
        (503, b"busy", ("error", "http 503", None)),
        (301, b"", ("error", "redirect 301 not followed", None)),
        # Currency: the ping's (CNY here), said or left out; any other is an error.
        (200, b'{"decision":"bid","bid":"35.00","currency":"CNY"}', ("success", "", Decimal(35))),
        (
            200,
            b'{"decision":"bid","bid":"35.00","currency":"USD"}',
            ("error", "bid currency", None),
        ),
        (
            200,
            b'{"decision":"bid","bid":"35.00","currency":"cny"}',
            ("error", "bid currency", None),
        ),
        (200, b'{"decision":"bid","bid":"35.00","currency":156}', ("error", "bid currency", None)),
        (200, b'{"decision":"accept","currency":"USD"}', ("success", "accepted at the", None)),
    ],
)
def test_ping_answers_are_parsed_into_bid_reject_or_error(
    status: int, body: bytes, expected: tuple[str, str, Decimal | None]
) -> None:
    headers = {"location": "/x"} if 300 <= status < 400 else {}
    outcome, reason, bid = pings.parse_ping_response(
        _response(status, body, **headers), currency="CNY"
    )

    assert outcome == expected[0]
    assert reason.startswith(expected[1])
    assert bid == expected[2]


# --- The award decides dedupe and caps again ------------------------------------------------


def test_auctions_of_one_person_queued_again_award_a_partner_the_person_once(
    bidder: Callable[..., SimulatedPartner], make_referral: Callable[..., Referral]
) -> None:
    # An outage left the same applicant's referrals with pending auctions (intake chose the
    # candidates when no lead existed yet); running them again must not sell the applicant
    # to one partner over and over.
    sim = bidder("30.00")
    referrals = [make_referral(national_id="110101199003071234") for _ in range(3)]

    runs = [auctions.run(auction_id=referral.auction.id) for referral in referrals]

    assert [len(run.winners) for run in runs] == [1, 0, 0]
    assert Lead.objects.filter(partner=sim.partner).count() == 1
    for referral in referrals[1:]:
        assert ping_of(referral.auction, sim).reason == auctions.PASSED_OVER_DEDUPE
        referral.refresh_from_db()
        assert referral.status == ReferralStatus.NO_MATCH
        assert referral.status_reason == auctions.PASSED_OVER_ALL


def test_an_award_counts_the_products_cap_at_the_moment_of_award(
    bidder: Callable[..., SimulatedPartner], make_referral: Callable[..., Referral]
) -> None:
    sim = bidder("30.00")
    sim.product.daily_cap = 1
    sim.product.save()
    referrals = [make_referral() for _ in range(2)]  # two people, both pinged the product

    runs = [auctions.run(auction_id=referral.auction.id) for referral in referrals]

    assert [len(run.winners) for run in runs] == [1, 0]
    assert Lead.objects.filter(product=sim.product).count() == 1
    assert ping_of(referrals[1].auction, sim).reason == auctions.PASSED_OVER_CAP


def test_a_fall_back_passes_over_a_bidder_that_got_the_person_meanwhile(
    bidder: Callable[..., SimulatedPartner], make_referral: Callable[..., Referral]
) -> None:
    fickle = bidder("50.00", exclusive=True)
    steady = bidder("30.00", exclusive=True)
    first, second = (make_referral(national_id="110101199003075678") for _ in range(2))
    lost = auctions.run(auction_id=first.auction.id).winners[0]
    assert lost.partner_id == fickle.partner.id
    # The person's other referral: the best bidder has them already, the next one wins.
    won = auctions.run(auction_id=second.auction.id).winners
    assert [lead.partner_id for lead in won] == [steady.partner.id]
    # Then the first post is rejected: its fall-back must not send steady the person again.
    Lead.objects.filter(pk=lost.pk).update(status=LeadStatus.POST_REJECTED)

    assert auctions.fall_back(lead_id=lost.id) == []

    assert ping_of(first.auction, steady).reason == auctions.PASSED_OVER_DEDUPE
    assert not Lead.objects.filter(referral=first, partner=steady.partner).exists()
