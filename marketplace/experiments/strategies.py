"""Named strategies, their append-only versions, and the default strategy's promotions."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.contrib.auth.models import User
from django.db import transaction
from django.db.models import Max

from marketplace.models import Arm, Experiment, Strategy, StrategyPromotion, StrategyVersion
from marketplace.strategy_spec import DEFAULT_STRATEGY, StrategyKind, StrategySpec


def spec_of(version: StrategyVersion) -> StrategySpec:
    """The routing contract for a stored version."""
    return StrategySpec(
        key=version.strategy.key,
        version=version.version,
        kind=version.kind,
        max_partners=version.max_partners,
        explore=version.explore,
        return_penalty=version.return_penalty,
        params={str(k): str(v) for k, v in (version.params or {}).items()},
    )


def default_version() -> StrategyVersion | None:
    return StrategyVersion.objects.select_related("strategy").filter(is_default=True).first()


def default_spec() -> StrategySpec:
    """The promoted default's version, or the built-in DEFAULT_STRATEGY when none was."""
    version = default_version()
    return DEFAULT_STRATEGY if version is None else spec_of(version)


def create_strategy(*, key: str, name: str, description: str = "") -> Strategy:
    """A new named strategy, validated as the admin's form validates it (slug key, unique).
    It routes nothing until it has a version (``create_version``)."""
    strategy = Strategy(key=key, name=name, description=description)
    strategy.full_clean()
    strategy.save()
    return strategy


def create_version(
    *,
    strategy: Strategy,
    kind: str,
    max_partners: int | None = None,
    explore: bool = True,
    return_penalty: Decimal = Decimal("1"),
    params: dict[str, Any] | None = None,
    note: str = "",
    user: User | None = None,
) -> StrategyVersion:
    """A new version of ``strategy`` numbered after its latest; earlier versions never
    change (arms, decisions and promotions name them)."""
    if kind not in StrategyKind.values:
        raise ValueError(f"unknown strategy kind {kind!r}")
    if max_partners is not None and max_partners < 1:
        raise ValueError("max_partners must be at least 1")
    if return_penalty < 0:
        raise ValueError("return_penalty must not be negative")
    with transaction.atomic():
        # Lock the strategy so two editors cannot both take the next number.
        Strategy.objects.select_for_update().get(pk=strategy.pk)
        latest = strategy.versions.aggregate(n=Max("version"))["n"] or 0
        return StrategyVersion.objects.create(
            strategy=strategy,
            version=latest + 1,
            kind=kind,
            max_partners=max_partners,
            explore=explore,
            return_penalty=return_penalty,
            params={str(k): str(v) for k, v in (params or {}).items()},
            note=note,
            created_by=user if user is not None and user.pk else None,
        )


def promote_version(
    *,
    version: StrategyVersion,
    user: User,
    reason: str,
    experiment: Experiment | None = None,
    arm: Arm | None = None,
) -> StrategyPromotion:
    """Make ``version`` the platform's default strategy, recorded with who, when and why.
    The one way the default changes: the partial unique index allows one default at a
    time, and the current default's row is locked so two promotions go one after the
    other."""
    reason = reason.strip()
    if not reason:
        raise ValueError("a promotion needs a reason")
    with transaction.atomic():
        previous = StrategyVersion.objects.select_for_update().filter(is_default=True).first()
        if previous is not None and previous.pk != version.pk:
            StrategyVersion.objects.filter(pk=previous.pk).update(is_default=False)
        StrategyVersion.objects.filter(pk=version.pk).update(is_default=True)
        version.is_default = True
        return StrategyPromotion.objects.create(
            strategy_version=version,
            previous=previous,
            promoted_by=user,
            reason=reason,
            experiment=experiment,
            arm=arm,
        )
