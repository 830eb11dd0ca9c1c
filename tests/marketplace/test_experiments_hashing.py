"""The lab's bucketing is GrowthBook's published scheme: every hash, bucket-range,
variation and namespace case from GrowthBook's own test suite (tests/marketplace/data,
see its README) passes, assignment is deterministic per subject, and experiments of one
layer never share a subject."""

from __future__ import annotations

import json
import uuid
from collections import Counter
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from marketplace.experiments import assignment
from marketplace.experiments.assignment import Plan, allocate_range, arm_of, assign

CASES = json.loads((Path(__file__).parent / "data" / "growthbook_cases.json").read_text())


def _rounded(ranges: list[Any]) -> list[list[float]]:
    return [[round(v, 6) for v in r] for r in ranges]


def test_the_vendored_cases_are_all_there() -> None:
    assert {len(CASES[k]) for k in ("hash", "getBucketRange", "chooseVariation", "inNamespace")}
    assert all(CASES[k] for k in ("hash", "getBucketRange", "chooseVariation", "inNamespace"))


@pytest.mark.parametrize(("seed", "value", "version", "expected"), CASES["hash"])
def test_hash_matches_growthbook(seed: str, value: str, version: int, expected: Any) -> None:
    assert assignment.gbhash(seed, value, version) == expected


@pytest.mark.parametrize(("name", "args", "expected"), CASES["getBucketRange"])
def test_bucket_ranges_match_growthbook(name: str, args: list[Any], expected: Any) -> None:
    count, coverage, weights = args
    actual = assignment.getBucketRanges(count, coverage, weights)
    assert _rounded([list(r) for r in actual]) == _rounded(expected), name


@pytest.mark.parametrize(("name", "n", "ranges", "expected"), CASES["chooseVariation"])
def test_choose_variation_matches_growthbook(
    name: str, n: float, ranges: Any, expected: int
) -> None:
    assert assignment.chooseVariation(n, [tuple(r) for r in ranges]) == expected, name


@pytest.mark.parametrize(("name", "user", "namespace", "expected"), CASES["inNamespace"])
def test_namespaces_match_growthbook(name: str, user: str, namespace: Any, expected: bool) -> None:
    assert assignment.inNamespace(user, tuple(namespace)) == expected, name


def _plan(key: str = "exp", **kw: Any) -> Plan:
    values: dict[str, Any] = {
        "key": key,
        "bucket_version": 1,
        "layer": "routing",
        "namespace": (0.0, 1.0),
        "coverage": 1.0,
        "weights": (1.0, 1.0),
        "arms": ("control", "treatment"),
    }
    values.update(kw)
    return Plan(**values)


def test_the_arm_is_growthbooks_variation_for_the_seed_and_subject() -> None:
    """An independent oracle: GrowthBook's formula written out (hash v2 of key:bucket)."""
    plan = _plan(weights=(0.2, 0.8))
    for i in range(500):
        subject = str(uuid.UUID(int=i * 7919))
        n = assignment.gbhash("exp:1", subject, 2)
        assert n is not None
        expected = "control" if n < 0.2 else "treatment"
        assert arm_of(plan, subject) == expected


@given(st.uuids())
def test_a_subject_stays_in_one_arm_across_referrals(subject: uuid.UUID) -> None:
    plan = _plan(coverage=0.7, weights=(1.0, 2.0, 1.0), arms=("a", "b", "c"))
    first = arm_of(plan, str(subject))
    assert all(arm_of(plan, str(subject)) == first for _ in range(3))
    same_plan_again = _plan(coverage=0.7, weights=(1.0, 2.0, 1.0), arms=("a", "b", "c"))
    assert arm_of(same_plan_again, str(subject)) == first


def test_arms_get_their_weights_and_coverage_its_share() -> None:
    plan = _plan(coverage=0.5, weights=(1.0, 3.0))
    counts = Counter(arm_of(plan, str(uuid.UUID(int=i * 104729 + 17))) for i in range(20000))
    assert abs(counts[None] / 20000 - 0.5) < 0.02
    assert abs(counts["treatment"] / (counts["control"] + counts["treatment"]) - 0.75) < 0.02


def test_a_new_bucket_version_reshuffles_subjects() -> None:
    subjects = [str(uuid.UUID(int=i * 15485863)) for i in range(2000)]
    before = [arm_of(_plan(), s) for s in subjects]
    after = [arm_of(_plan(bucket_version=2), s) for s in subjects]
    moved = sum(a != b for a, b in zip(before, after, strict=True)) / len(subjects)
    assert 0.4 < moved < 0.6  # independent re-hash: about half change arm


@settings(max_examples=60)
@given(
    shares=st.lists(
        st.decimals(min_value=Decimal("0.05"), max_value=Decimal("0.5"), places=3),
        min_size=2,
        max_size=4,
    ),
    subjects=st.lists(st.uuids(), min_size=50, max_size=200, unique=True),
)
def test_experiments_of_one_layer_never_share_a_subject(
    shares: list[Decimal], subjects: list[uuid.UUID]
) -> None:
    taken: list[tuple[Decimal, Decimal]] = []
    plans = []
    for i, share in enumerate(shares):
        try:
            low, high = allocate_range(share=share, taken=taken)
        except assignment.NoRoomInLayer:
            continue
        taken.append((low, high))
        plans.append(_plan(key=f"exp-{i}", namespace=(float(low), float(high))))
    for subject in subjects:
        inside = [p.key for p in plans if arm_of(p, str(subject)) is not None]
        assert len(inside) <= 1, (subject, inside)


def test_layer_ranges_are_disjoint_and_reuse_freed_space() -> None:
    a = allocate_range(share=Decimal("0.4"), taken=[])
    b = allocate_range(share=Decimal("0.4"), taken=[a])
    assert a == (Decimal("0"), Decimal("0.4"))
    assert b == (Decimal("0.4"), Decimal("0.8"))
    with pytest.raises(assignment.NoRoomInLayer):
        allocate_range(share=Decimal("0.3"), taken=[a, b])
    assert allocate_range(share=Decimal("0.3"), taken=[b]) == (Decimal("0"), Decimal("0.3"))


def test_across_layers_the_experiment_started_first_wins() -> None:
    from datetime import UTC, datetime

    early = _plan(key="early", layer="one", started_at=datetime(2026, 1, 1, tzinfo=UTC))
    late = _plan(key="late", layer="two", started_at=datetime(2026, 2, 1, tzinfo=UTC))
    found = assign([late, early], "subject-1")
    assert found is not None and found[0].key == "early"
