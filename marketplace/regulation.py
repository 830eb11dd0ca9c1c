"""Regulatory rules routing applies to every referral: the all-in cost cap, the applicant's
age range and excluded regions. Ops configure them in the admin as dated, append-only rule
set versions (``marketplace.models.RuleSet``); the version in force at the referral's time
applies. With no version at all, the platform default: ``settings.APR_CAP`` as the cap,
adults only (18), no maximum age, no excluded region.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from django.conf import settings

# No referral of a minor is ever routed, whatever a rule set says (DOMAIN: minors).
LEGAL_AGE = 18


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
