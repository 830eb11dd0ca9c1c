"""Regulatory rules routing applies to every referral: the all-in cost cap, the applicant's
age range and excluded regions. Ops configure them in the admin as dated, append-only rule
set versions (``marketplace.models.RuleSet``); the version in force at the referral's time
applies. With no version at all, the platform default: ``settings.APR_CAP`` as the cap,
adults only (18), no maximum age, no excluded region.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from django.conf import settings
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError

from marketplace.models.regulation import RuleSet
from partners import catalogue_cache

# No referral of a minor is ever routed, whatever a rule set says (DOMAIN: minors).
LEGAL_AGE = 18
REGION = re.compile(r"[A-Z]{2}-[A-Z0-9]{1,3}")
ORDER = ("-effective_from", "-id")


@dataclass(frozen=True, slots=True)
class Rules:
    all_in_cost_cap: Decimal  # annual, a fraction: 0.24 = 24%
    min_age: int
    max_age: int | None  # None: no maximum
    excluded_regions: frozenset[str]
    rule_set_id: int | None = None  # the version applied; None: the platform default


def default_rules() -> Rules:
    return Rules(
        all_in_cost_cap=Decimal(settings.APR_CAP),
        min_age=LEGAL_AGE,
        max_age=None,
        excluded_regions=frozenset(),
    )


def rules_of(rule_set: RuleSet) -> Rules:
    return Rules(
        all_in_cost_cap=rule_set.all_in_cost_cap,
        min_age=rule_set.min_age,
        max_age=rule_set.max_age,
        excluded_regions=frozenset(rule_set.excluded_regions),
        rule_set_id=rule_set.pk,
    )


def rules_at(at: datetime, *, version: int | None = None) -> Rules:
    """The rules in force at ``at``: the latest version effective by then (of two with one
    ``effective_from``, the later written), else the platform default. One indexed read;
    none given the catalogue ``version`` the caller read (every rule set, cached per
    version: a new one moves the version)."""
    if version is None:
        rule_set = RuleSet.objects.filter(effective_from__lte=at).order_by(*ORDER).first()
        return default_rules() if rule_set is None else rules_of(rule_set)
    every = catalogue_cache.cached(
        "rule-sets",
        version=version,
        compute=lambda: [(r.effective_from, rules_of(r)) for r in RuleSet.objects.order_by(*ORDER)],
    )
    return next((rules for since, rules in every if since <= at), default_rules())


def publish_rule_set(
    *,
    effective_from: datetime,
    all_in_cost_cap: Decimal,
    min_age: int,
    max_age: int | None,
    excluded_regions: Iterable[str],
    note: str,
    created_by: User | None,
) -> RuleSet:
    """A new version of the rules (the only way one is written: versions are never edited).
    Checks what the database also checks, so a bad value is a message, not an error."""
    regions = _regions(excluded_regions)
    errors = rule_set_errors(
        all_in_cost_cap=all_in_cost_cap,
        min_age=min_age,
        max_age=max_age,
        excluded_regions=regions,
    )
    if errors:
        raise ValidationError(errors)
    return RuleSet.objects.create(
        effective_from=effective_from,
        all_in_cost_cap=all_in_cost_cap,
        min_age=min_age,
        max_age=max_age,
        excluded_regions=regions,
        note=note,
        created_by=created_by,
    )


def _regions(values: Iterable[str]) -> list[str]:
    return sorted({value.strip().upper() for value in values if value.strip()})


def rule_set_errors(
    *,
    all_in_cost_cap: Decimal | None,
    min_age: int | None,
    max_age: int | None,
    excluded_regions: Iterable[str],
) -> dict[str, list[str]]:
    """Per-field messages for a rule set's values (empty: valid). Missing values are the
    form's to report."""
    errors: dict[str, list[str]] = {}
    if all_in_cost_cap is not None and not Decimal(0) <= all_in_cost_cap <= Decimal(1):
        errors["all_in_cost_cap"] = ["A cap is a fraction between 0 and 1 (0.24 = 24%)."]
    if min_age is not None and min_age < LEGAL_AGE:
        errors["min_age"] = [f"Applicants under {LEGAL_AGE} are never routed."]
    if min_age is not None and max_age is not None and max_age < min_age:
        errors["max_age"] = ["The maximum age is below the minimum age."]
    bad = [region for region in _regions(excluded_regions) if not REGION.fullmatch(region)]
    if bad:
        errors["excluded_regions"] = [f"Not ISO 3166-2 codes: {', '.join(bad)}."]
    return errors
