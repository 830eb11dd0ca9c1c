"""Learning to route: revenue per referral of the learned ranking (Beta-Binomial posteriors
from cold start, Thompson sampling, ``marketplace.learning`` and ``marketplace.ranking``)
after 20,000 simulated referrals, against an oracle that knows the true conversion rates,
with random routing beside it.

The world and its generator are ``demo.learning_sim`` (documented there): the demo
lenders' credit boxes, fees and simulator rates, with true rates varying by risk tier,
channel and amount band; every product starts from the platform's default priors; the
learner sees Bernoulli outcomes in batches of 200 referrals (the minute-by-minute count
refresh). The decision loop runs in-process: the learner's counts, the ranking functions
and Bernoulli outcomes, no database (the database path of the same functions is tested in
``tests/marketplace``). Revenue per referral is each router's true expected revenue of its
choice, net of return credits, so the ratio carries no Bernoulli noise of the scoring.

Figures: ``learned_revenue_vs_oracle``, learned / oracle over the last 2,000 of the
20,000 referrals (the learner's state after ~18,000), with the whole run's ratio and the
random router's beside it, as the median over three worlds (seeds).
"""

from __future__ import annotations

import statistics
import time

from demo.learning_sim import simulate

REFERRALS = 20_000
LAST = 2_000
SEEDS = (11, 23, 37)


def run() -> dict[str, dict[str, object]]:
    started = time.perf_counter()
    results = [simulate(referrals=REFERRALS, seed=seed) for seed in SEEDS]
    elapsed = time.perf_counter() - started
    late = statistics.median(r.ratio("learned", last=LAST) for r in results)
    whole = statistics.median(r.ratio("learned") for r in results)
    random_late = statistics.median(r.ratio("random", last=LAST) for r in results)
    oracle = statistics.median(sum(r.oracle[-LAST:]) / LAST for r in results)
    print(
        f"learned / oracle: last {LAST} {late:.3f}, all {REFERRALS} {whole:.3f}; random / "
        f"oracle {random_late:.3f}; oracle revenue per referral {oracle:.2f} CNY "
        f"({len(SEEDS)} worlds in {elapsed:.1f} s)"
    )
    return {
        "learned_revenue_vs_oracle": {
            "value": round(late, 3),
            "baseline": f"oracle knowing the true rates, {oracle:.2f} CNY per referral over "
            f"the last {LAST} of {REFERRALS:,}; random routing {random_late:.3f}",
            "goal": ">= 0.9",
            "learned_vs_oracle_whole_run": round(whole, 3),
            "random_vs_oracle": round(random_late, 3),
            "seeds": list(SEEDS),
        }
    }
