"""An in-process world for learning to route in: the demo lenders (``demo.world.PARTNERS``)
with true conversion rates per segment that the learner does not know, referrals drawn
like declined traffic, and three routers compared on the same referrals.

The generator (documented for the benchmark, ``bench/bench_learning.py``, and the
convergence test):

- **Products**: every routable demo lender (not the one above the APR cap, not the one in
  sandbox), with its credit box's tiers and amounts (regions are ignored), its fees (CPL,
  CPA, CPF rate, CPF bounds; the USD-billed one converted at its demo rate) and its
  simulator rates (accept, approve, fund) as the base of its true rates.
- **True rates per segment**: the base approval rate times a tier factor (1.3 for R1 down
  to 0.6 for R8) times a per-lender taste for the tier (a fixed draw in 0.7-1.3 from the
  seed), the base acceptance rate times a channel factor (app 1.0, web 0.92, partner
  0.85), the base funding rate times an amount-band factor (0.95-1.03), all clipped to
  [0.01, 0.99]; return rates 2-15% per lender.
- **Referrals**: risk tier R1-R8 weighted like declines (mostly R4-R6), channel app 60% /
  web 30% / partner 10%, amount log-uniform in 1,000-60,000 CNY rounded to 100. A referral
  whose tier and amount fit no product is drawn again.
- **Routers**, each exclusive (one partner per referral), on the same referrals:
  ``learned`` ranks by ``marketplace.ranking.rank`` with Thompson sampling over the
  posteriors of ``marketplace.learning.funnel`` (cold start: every product's priors are
  the platform defaults, ``Expectation()``, which are wrong for every lender); ``oracle``
  picks the candidate with the highest true expected revenue; ``random`` picks uniformly.
- **Feedback**: the learned router's lead gets Bernoulli outcomes from the true rates
  (accept, then approve, then fund; a return with the lender's return rate after
  acceptance) and the counts (``marketplace.learning.Counts``) are updated in batches of
  ``batch`` referrals, as the minute-by-minute refresh does.
- **Revenue per referral** of a router is the true expected revenue of its choice (fees
  times true stage probabilities, net of the CPL a return credits): the same quantity for
  all three, without the noise of one Bernoulli run.
"""

from __future__ import annotations

import math
import random
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal

from demo.world import DEMO_RATES, PARTNERS
from marketplace.bands import segment_key
from marketplace.learning import Counts, Expectation, funnel
from marketplace.ranking import Candidate, FeeCard, Funnel, expected_value, rank
from partners.models import PartnerStatus

TIERS = [f"R{i}" for i in range(1, 9)]
TIER_WEIGHTS = [0.03, 0.05, 0.10, 0.17, 0.22, 0.20, 0.14, 0.09]
TIER_FACTOR = dict(zip(TIERS, [1.3, 1.2, 1.1, 1.0, 0.9, 0.8, 0.7, 0.6], strict=True))
CHANNELS = ["app", "web", "partner"]
CHANNEL_WEIGHTS = [0.6, 0.3, 0.1]
CHANNEL_FACTOR = {"app": 1.0, "web": 0.92, "partner": 0.85}
BAND_FACTOR = {"0-2999": 0.95, "3000-9999": 1.0, "10000-29999": 1.03, "30000+": 0.97}
APR_CAP = Decimal("0.24")


def _clip(p: float) -> float:
    return min(0.99, max(0.01, p))


@dataclass(frozen=True)
class SimProduct:
    product_id: uuid.UUID
    partner_id: uuid.UUID
    name: str
    tiers: frozenset[str]
    min_amount: Decimal
    max_amount: Decimal
    card: FeeCard
    accept: float
    approve: float
    fund: float
    returned: float
    taste: dict[str, float]  # the lender's own view of each tier

    def true_rates(self, *, tier: str, channel: str, band: str) -> tuple[float, float, float]:
        return (
            _clip(self.accept * CHANNEL_FACTOR[channel]),
            _clip(self.approve * TIER_FACTOR[tier] * self.taste[tier]),
            _clip(self.fund * BAND_FACTOR[band]),
        )


@dataclass(frozen=True)
class SimReferral:
    tier: str
    channel: str
    amount: Decimal

    @property
    def band(self) -> str:
        return segment_key(risk_tier=self.tier, channel=self.channel, amount=self.amount).split(
            "|"
        )[2]

    @property
    def segment(self) -> str:
        return segment_key(risk_tier=self.tier, channel=self.channel, amount=self.amount)


def demo_products(rng: random.Random) -> list[SimProduct]:
    usd_per_cny = Decimal(DEMO_RATES[0][2])
    products = []
    for index, spec in enumerate(PARTNERS):
        if Decimal(spec["apr"][0]) > APR_CAP or spec.get("status") == PartnerStatus.SANDBOX:
            continue
        cpl, cpa, cpf = (Decimal(v) for v in spec["fees"])
        low, high = (Decimal(v) for v in spec.get("cpf_bounds", ("50.00", "2000.00")))
        in_usd = spec.get("currency") == "USD"
        card = FeeCard(
            currency="USD" if in_usd else "CNY",
            cpl=cpl,
            cpa=cpa,
            cpf_rate=cpf,
            cpf_min=low,
            cpf_max=high,
            to_platform=(1 / usd_per_cny).quantize(Decimal("0.00000001")) if in_usd else Decimal(1),
        )
        first, last = (int(t[1:]) for t in spec["tiers"].split("-"))
        accept, approve, fund = spec["sim"][:3]
        products.append(
            SimProduct(
                product_id=uuid.UUID(int=index + 1),
                partner_id=uuid.UUID(int=1000 + index),
                name=spec["name"],
                tiers=frozenset(f"R{i}" for i in range(first, last + 1)),
                min_amount=Decimal(spec["amount"][0]),
                max_amount=Decimal(spec["amount"][1]),
                card=card,
                accept=accept,
                approve=approve,
                fund=fund,
                returned=0.02 + 0.13 * rng.random(),
                taste={tier: 0.7 + 0.6 * rng.random() for tier in TIERS},
            )
        )
    return products


def draw_referral(rng: random.Random) -> SimReferral:
    amount = Decimal(round(math.exp(rng.uniform(math.log(1000), math.log(60000))) / 100) * 100)
    return SimReferral(
        tier=rng.choices(TIERS, TIER_WEIGHTS)[0],
        channel=rng.choices(CHANNELS, CHANNEL_WEIGHTS)[0],
        amount=amount,
    )


def eligible(products: list[SimProduct], referral: SimReferral) -> list[SimProduct]:
    return [
        p
        for p in products
        if referral.tier in p.tiers and p.min_amount <= referral.amount <= p.max_amount
    ]


def true_value(product: SimProduct, referral: SimReferral) -> float:
    """Expected revenue of giving the referral to the product, net of return credits."""
    accept, approve, fund = product.true_rates(
        tier=referral.tier, channel=referral.channel, band=referral.band
    )
    gross = expected_value(
        accept=accept, approve=approve, fund=fund, card=product.card, principal=referral.amount
    )
    credit = product.returned * accept * float(product.card.cpl * product.card.to_platform)  # type: ignore[operator]
    return gross - credit


@dataclass
class Result:
    referrals: int
    learned: list[float]  # per referral, in order
    oracle: list[float]
    random: list[float]

    def ratio(self, router: str, *, last: int | None = None) -> float:
        values = getattr(self, router)
        oracle = self.oracle
        if last is not None:
            values, oracle = values[-last:], oracle[-last:]
        return sum(values) / sum(oracle)


def simulate(
    *,
    referrals: int = 20_000,
    seed: int = 11,
    batch: int = 200,
    on_batch: Callable[[int, Result], None] | None = None,
) -> Result:
    """Run the three routers over ``referrals`` referrals of the world seeded by ``seed``."""
    world = random.Random(seed)  # noqa: S311 (a reproducible world, not secrets)
    products = demo_products(world)
    traffic = random.Random(seed + 1)  # noqa: S311 (a reproducible world, not secrets)
    thompson = random.Random(seed + 2)  # noqa: S311 (a reproducible world, not secrets)
    outcomes = random.Random(seed + 3)  # noqa: S311 (a reproducible world, not secrets)
    chance = random.Random(seed + 4)  # noqa: S311 (a reproducible world, not secrets)
    counts = Counts()
    pending: list[tuple[uuid.UUID, str, str, bool]] = []
    result = Result(0, [], [], [])
    prior = Expectation()
    posteriors: dict[tuple[uuid.UUID, str], Funnel] = {}
    while result.referrals < referrals:
        referral = draw_referral(traffic)
        fits = eligible(products, referral)
        if not fits:
            continue
        segment = referral.segment
        candidates = []
        for p in fits:
            # Posteriors move only when a batch of outcomes is counted: built once a batch.
            known = posteriors.get((p.product_id, segment))
            if known is None:
                known = posteriors[(p.product_id, segment)] = funnel(
                    prior,
                    product_counts=counts.product(p.product_id),
                    segment_counts=counts.segment(p.product_id, segment),
                )
            candidates.append(Candidate(p.product_id, p.partner_id, known, p.card))
        best = rank(
            candidates,
            principal=referral.amount,
            explore=True,
            return_penalty=Decimal(1),
            rng=thompson,
        )[0].candidate.product_id
        chosen = next(p for p in fits if p.product_id == best)
        values = [true_value(p, referral) for p in fits]
        result.learned.append(true_value(chosen, referral))
        result.oracle.append(max(values))
        result.random.append(values[chance.randrange(len(values))])
        result.referrals += 1
        pending.extend(_outcomes(chosen, referral, outcomes))
        if result.referrals % batch == 0:
            for product_id, seg, stage, success in pending:
                counts.add(
                    product_id=product_id,
                    segment=seg,
                    stage=stage,
                    trials=1,
                    successes=int(success),
                )
            pending.clear()
            posteriors.clear()
            if on_batch is not None:
                on_batch(result.referrals, result)
    return result


def _outcomes(
    product: SimProduct, referral: SimReferral, rng: random.Random
) -> list[tuple[uuid.UUID, str, str, bool]]:
    accept, approve, fund = product.true_rates(
        tier=referral.tier, channel=referral.channel, band=referral.band
    )
    key, segment = product.product_id, referral.segment
    accepted = rng.random() < accept
    seen = [(key, segment, "accept", accepted)]
    if not accepted:
        return seen
    seen.append((key, segment, "return", rng.random() < product.returned))
    approved = rng.random() < approve
    seen.append((key, segment, "approve", approved))
    if approved:
        seen.append((key, segment, "fund", rng.random() < fund))
    return seen
