"""Who may receive a referral: every rule between "the credit box fits" and "a candidate for
ranking", each refusal named by a reason code from one documented list.

``screen`` takes the referral's matched credit boxes (``marketplace.matching.match``) and
returns a ``Screening``: the eligible boxes (in the given order) and, for every other box, a
``Rejection`` with its reason codes. ``explain_box`` says why a box does *not* fit an
application (the credit-box codes), so the admin can answer "why not this product" for any
product without a row stored per product per referral.

Reason codes (``ReasonCode``; the only values a rejection ever carries):

=================  ================================================================
code               meaning
=================  ================================================================
box_amount         loan amount outside the product's amount range
box_term           loan term outside the product's term range
box_tier           the operator's risk tier is not one the product accepts
box_region         region not among the product's regions, or excluded by it
box_age            applicant's age outside the product's age range
box_income         income band floor below the product's minimum income
box_employment     employment type not accepted by the product
box_purpose        loan purpose not accepted by the product
box_channel        channel not accepted by the product
box_apr            the product's cheapest APR is above the cost cap
partner_sandbox    a live applicant, and the partner is still in sandbox
partner_not_live   the partner is not live (onboarding, paused, offboarded)
product_inactive   the product is switched off
routing_hold       routing to the partner or product is held (ops, credit, budget)
licence_missing    the partner has no licence in the registry, or not yet valid
licence_expired    the partner's licence expired before the referral
reg_all_in_cost    the product's worst all-in cost can exceed the rule set's cap
reg_age            applicant's age outside the rule set's age range
reg_region         applicant's region excluded by the rule set
consent_scope      the consent grant does not name the partner
suppressed         the partner listed the applicant as an existing customer
dedupe             the partner got this person within its dedupe window
volume_cap         the product reached its daily or monthly lead cap, or its (or its
                   partner's) monthly budget is spent (``marketplace.caps``)
=================  ================================================================

Order of the rules: the credit box first (``match``; its codes come from ``explain_box``),
then the rules that need no lock (sandbox, licence, regulation, consent scope,
suppression), all of whose reasons are reported together. Only a box none of those rejects
is checked against the dedupe window (decided under the applicant's row lock,
``marketplace.locks``) and its caps: here a cheap read of the cap counters; the award
takes them by compare-and-set (``marketplace.caps``) and a refused product is screened out
there with the same code.
A partner's dedupe window is the one of its cheapest otherwise-eligible product.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal

from django.db import models
from django.utils import timezone

from consent import grants, suppression
from consent.models import ConsentGrant
from marketplace import caps, locks
from marketplace.matching import Application, CreditBox
from marketplace.models import Referral
from marketplace.regulation import Rules, default_rules
from partners import catalogue_cache, registry


class ReasonCode(models.TextChoices):
    BOX_AMOUNT = "box_amount", "Loan amount outside the product's range"
    BOX_TERM = "box_term", "Loan term outside the product's range"
    BOX_TIER = "box_tier", "Risk tier not accepted by the product"
    BOX_REGION = "box_region", "Region not served by the product"
    BOX_AGE = "box_age", "Age outside the product's range"
    BOX_INCOME = "box_income", "Income below the product's minimum"
    BOX_EMPLOYMENT = "box_employment", "Employment type not accepted by the product"
    BOX_PURPOSE = "box_purpose", "Loan purpose not accepted by the product"
    BOX_CHANNEL = "box_channel", "Channel not accepted by the product"
    BOX_APR = "box_apr", "Cheapest APR above the cost cap"
    PARTNER_SANDBOX = "partner_sandbox", "Partner in sandbox, applicant live"
    PARTNER_NOT_LIVE = "partner_not_live", "Partner not live"
    PRODUCT_INACTIVE = "product_inactive", "Product switched off"
    ROUTING_HOLD = "routing_hold", "Routing held (ops, credit limit or budget)"
    LICENCE_MISSING = "licence_missing", "Partner not in the licence registry"
    LICENCE_EXPIRED = "licence_expired", "Partner's licence expired"
    REG_ALL_IN_COST = "reg_all_in_cost", "All-in cost can exceed the regulatory cap"
    REG_AGE = "reg_age", "Age outside the regulatory range"
    REG_REGION = "reg_region", "Region excluded by regulation"
    CONSENT_SCOPE = "consent_scope", "Consent does not cover the partner"
    SUPPRESSED = "suppressed", "Applicant on the partner's suppression list"
    DEDUPE = "dedupe", "Partner got this person within its dedupe window"
    VOLUME_CAP = "volume_cap", "Product at its lead cap, or its budget spent"


R = ReasonCode


@dataclass(frozen=True, slots=True)
class Rejection:
    product_id: uuid.UUID
    partner_id: uuid.UUID
    reasons: tuple[str, ...]  # ReasonCode values, never empty


@dataclass(frozen=True, slots=True)
class Screening:
    eligible: list[CreditBox]  # in the order given to ``screen``
    rejected: list[Rejection]
    rule_set_id: int | None = None  # the regulatory rule set applied; None: the default


def explain_box(box: CreditBox, app: Application, apr_cap: Decimal) -> tuple[str, ...]:
    """Why the box does not accept the application: its credit-box reason codes, empty when
    it fits. Agrees with ``marketplace.matching.fits`` (a property test holds them equal)."""
    reasons: list[str] = []
    if not box.min_amount <= app.amount <= box.max_amount:
        reasons.append(R.BOX_AMOUNT)
    if not box.min_term <= app.term_months <= box.max_term:
        reasons.append(R.BOX_TERM)
    if app.risk_tier not in box.tiers:
        reasons.append(R.BOX_TIER)
    if (box.regions and app.region not in box.regions) or app.region in box.excluded_regions:
        reasons.append(R.BOX_REGION)
    if not box.min_age <= app.age <= box.max_age:
        reasons.append(R.BOX_AGE)
    if app.income_floor < box.min_income:
        reasons.append(R.BOX_INCOME)
    if box.employment_types and app.employment_type not in box.employment_types:
        reasons.append(R.BOX_EMPLOYMENT)
    if box.purposes and app.purpose not in box.purposes:
        reasons.append(R.BOX_PURPOSE)
    if box.channels and app.channel not in box.channels:
        reasons.append(R.BOX_CHANNEL)
    if box.apr_min > apr_cap:
        reasons.append(R.BOX_APR)
    return tuple(str(reason) for reason in reasons)


@dataclass(frozen=True, slots=True)
class Facts:
    """What the rules needing no lock read about one referral, gathered before deciding."""

    at: datetime  # the referral's time: the licence and rule set in force then apply
    is_sandbox: bool
    age: int
    region: str
    rules: Rules
    allowed_partners: frozenset[uuid.UUID] | None  # None: any matched partner
    suppressing_partners: frozenset[uuid.UUID] = frozenset()
    # Partner id -> its licence's (valid from, expires on); an unlisted partner is absent.
    licences: Mapping[uuid.UUID, tuple[date, date]] = field(default_factory=dict)


def box_all_in_cost(box: CreditBox) -> Decimal:
    """The box's worst-case all-in annual cost (``partners.all_in_cost``); a box built
    without fee terms costs the top of its APR range."""
    return box.apr_max if box.all_in_cost is None else box.all_in_cost


def licence_reason(period: tuple[date, date] | None, at: datetime) -> str | None:
    """``licence_missing`` or ``licence_expired`` on the referral's UTC date for a licence
    in force from ``period[0]`` to ``period[1]`` inclusive (None: no licence), or None."""
    day = at.astimezone(UTC).date()
    if period is None or day < period[0]:
        return str(R.LICENCE_MISSING)  # (not in force yet: no licence held that day)
    if day > period[1]:
        return str(R.LICENCE_EXPIRED)
    return None


def static_reasons(box: CreditBox, facts: Facts) -> tuple[str, ...]:
    """The reasons needing no lock that reject this box for this referral (empty: none)."""
    reasons: list[str] = []
    if not facts.is_sandbox and box.partner_sandbox:
        # A live applicant's data never goes to a partner still in sandbox; sandbox traffic
        # may reach live partners too (as sandbox leads, for their sandbox keys).
        reasons.append(R.PARTNER_SANDBOX)
    licence = licence_reason(facts.licences.get(box.partner_id), facts.at)
    if licence is not None:
        reasons.append(licence)
    rules = facts.rules
    if box_all_in_cost(box) > rules.all_in_cost_cap:
        reasons.append(R.REG_ALL_IN_COST)
    if facts.age < rules.min_age or (rules.max_age is not None and facts.age > rules.max_age):
        reasons.append(R.REG_AGE)
    if facts.region in rules.excluded_regions:
        reasons.append(R.REG_REGION)
    if facts.allowed_partners is not None and box.partner_id not in facts.allowed_partners:
        reasons.append(R.CONSENT_SCOPE)
    if box.partner_id in facts.suppressing_partners:
        reasons.append(R.SUPPRESSED)
    return tuple(str(reason) for reason in reasons)


def cheapest_per_partner(boxes: Iterable[CreditBox]) -> list[CreditBox]:
    """One product per partner, the applicant's cheapest (lowest APR range); partners in
    that order."""
    best: dict[uuid.UUID, CreditBox] = {}
    for box in sorted(boxes, key=lambda b: (b.apr_min, b.apr_max, str(b.product_id))):
        best.setdefault(box.partner_id, box)
    return list(best.values())


def decide(
    boxes: Sequence[CreditBox],
    facts: Facts,
    *,
    recent_partners: Iterable[uuid.UUID] = (),
    full_products: Iterable[uuid.UUID] = (),
) -> Screening:
    """The screening, given every fact: pure. ``recent_partners`` got this person within
    their window, ``full_products`` are at a cap; both count only for a box no other rule
    rejects (``screen`` asks the database about those boxes alone)."""
    recent, full = set(recent_partners), set(full_products)
    eligible: list[CreditBox] = []
    rejected: list[Rejection] = []
    for box in boxes:
        reasons = static_reasons(box, facts)
        if not reasons and box.partner_id in recent:
            reasons = (str(R.DEDUPE),)
        elif not reasons and box.product_id in full:
            reasons = (str(R.VOLUME_CAP),)
        if reasons:
            rejected.append(Rejection(box.product_id, box.partner_id, reasons))
        else:
            eligible.append(box)
    return Screening(eligible=eligible, rejected=rejected, rule_set_id=facts.rules.rule_set_id)


def without_full(screening: Screening, product_ids: Iterable[uuid.UUID]) -> Screening:
    """The screening with these eligible products moved to the rejected, at their cap: the
    award could not take their counters (``marketplace.caps.reserve``)."""
    full = set(product_ids)
    return Screening(
        eligible=[box for box in screening.eligible if box.product_id not in full],
        rejected=[
            *screening.rejected,
            *(
                Rejection(box.product_id, box.partner_id, (str(R.VOLUME_CAP),))
                for box in screening.eligible
                if box.product_id in full
            ),
        ],
        rule_set_id=screening.rule_set_id,
    )


def referral_time(referral: Referral) -> datetime:
    """When the referral was made: intake routes it before inserting it (its leads first),
    so a referral not yet saved is being made now."""
    return referral.created_at or timezone.now()


def facts_for(
    referral: Referral,
    grant: ConsentGrant,
    *,
    rules: Rules,
    boxes: Sequence[CreditBox],
    version: int | None = None,
) -> Facts:
    """What the rules need to know about the referral and these boxes' partners. Given the
    catalogue ``version`` the caller read, licences and which partners keep suppression
    lists come from memory (cached per version: a change to either moves it), and the
    applicant's suppression check runs only when a candidate keeps a list."""
    allowed = grants.allowed_recipient_ids(grant)
    partner_ids = {box.partner_id for box in boxes}
    keeping = catalogue_cache.cached(
        ("suppression-keys", referral.is_sandbox),
        version=version,
        compute=lambda: registry.partners_with_suppression_keys(is_sandbox=referral.is_sandbox),
    )
    suppressing = (
        suppression.suppressing_partners(
            subject_id=referral.subject_id,
            partner_ids=partner_ids & keeping,
            is_sandbox=referral.is_sandbox,
        )
        if partner_ids & keeping
        else set()
    )
    every_licence = catalogue_cache.cached(
        "licences", version=version, compute=registry.every_licence_period
    )
    return Facts(
        at=referral_time(referral),
        is_sandbox=referral.is_sandbox,
        age=referral.age,
        region=referral.region,
        rules=rules,
        allowed_partners=None if allowed is None else frozenset(allowed),
        suppressing_partners=frozenset(suppressing),
        licences={p: every_licence[p] for p in partner_ids if p in every_licence},
    )


def screen(
    *,
    referral: Referral,
    grant: ConsentGrant,
    boxes: Sequence[CreditBox],
    rules: Rules | None = None,
    version: int | None = None,
) -> Screening:
    """Screen the referral's matched boxes. Dedupe windows are decided under the
    applicant's row lock held to the end of the caller's transaction (``marketplace.
    locks``): call it in the transaction that makes the leads, which then takes their
    caps (``marketplace.caps.reserve``)."""
    facts = facts_for(referral, grant, rules=rules or default_rules(), boxes=boxes, version=version)
    unlocked = [box for box in boxes if not static_reasons(box, facts)]
    # Intake holds the applicant's subject row (consent.vault.store_subject), so concurrent
    # intakes and awards of one person decide the dedupe window one at a time.
    recent = locks.recently_received(
        subject_id=referral.subject_id,
        is_sandbox=referral.is_sandbox,
        windows={box.partner_id: box.dedupe_days for box in cheapest_per_partner(unlocked)},
    )
    # Caps are per product: a partner whose cheapest product is full still gets the lead on
    # another product with room. A cheap read: the award takes the counters for real
    # (``marketplace.caps.reserve``).
    full = caps.at_cap(
        [
            (box.product_id, box.partner_id, box.daily_cap, box.monthly_cap)
            for box in unlocked
            if box.partner_id not in recent
        ],
        is_sandbox=referral.is_sandbox,
        version=version,
    )
    return decide(boxes, facts, recent_partners=recent, full_products=full)
