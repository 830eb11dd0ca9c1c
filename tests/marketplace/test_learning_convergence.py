"""Cold start to convergence: with no history and wrong priors, the learner plus Thompson
ranking discovers the simulated lenders' true conversion rates (``demo.learning_sim``),
and revenue per referral approaches an oracle that knows them, well above random routing."""

from __future__ import annotations

import pytest

from demo.learning_sim import simulate


@pytest.mark.parametrize("seed", [3, 17])
def test_revenue_per_referral_converges_toward_the_oracle(seed: int) -> None:
    curve: list[float] = []

    def window(done: int, result: object) -> None:
        if done % 1000 == 0:
            curve.append(result.ratio("learned", last=1000))  # type: ignore[attr-defined]

    result = simulate(referrals=10_000, seed=seed, on_batch=window)

    late = result.ratio("learned", last=2000)
    assert late >= 0.93
    assert late >= result.ratio("random", last=2000) + 0.1
    # It learned: the first thousand referrals earned less than the last thousand.
    assert curve[0] < curve[-1]
    assert result.ratio("oracle") == 1.0
