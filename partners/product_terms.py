"""A product's terms, grouped by concern: what it accepts (the credit box), how its leads
reach the partner (delivery), and how many leads it takes and on what terms of sharing
(limits). Abstract models: ``partners.models.Product`` composes them, so its table (one
row per product, one column per field) is the same as when the fields were written out in
it; its check constraints stay on ``Product``.

Django lists a model's fields in the order they were created, so these come before the
product's own (``partner``, ``name``, ...): the admin puts the product's own fields first
(``ProductAdmin.get_fields``)."""

from __future__ import annotations

from decimal import Decimal

from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models


class DeliveryMode(models.TextChoices):
    DIRECT_POST = "direct_post", "Direct post"
    PING_POST = "ping_post", "Ping-post"
    PULL = "pull", "Pull through the API"


class CreditBoxFields(models.Model):
    """Eligibility: the applicants and loans the product accepts (``marketplace.matching``
    checks a referral against these)."""

    # Loan request bounds, inclusive. Amounts in the platform currency (CNY).
    min_amount = models.DecimalField(max_digits=13, decimal_places=2)
    max_amount = models.DecimalField(max_digits=13, decimal_places=2)
    min_term_months = models.PositiveSmallIntegerField()
    max_term_months = models.PositiveSmallIntegerField()
    # Accepted operator risk tiers, e.g. ["R3", "R4", "R5"].
    risk_tiers = models.JSONField(default=list)
    # Region codes (ISO 3166-2, e.g. "CN-GD"); empty allowed list means everywhere.
    regions = models.JSONField(default=list, blank=True)
    excluded_regions = models.JSONField(default=list, blank=True)
    min_age = models.PositiveSmallIntegerField(default=18)
    max_age = models.PositiveSmallIntegerField(default=60)
    # Minimum monthly income, compared with the lower bound of the applicant's income band.
    min_monthly_income = models.DecimalField(max_digits=13, decimal_places=2, default=Decimal(0))
    employment_types = models.JSONField(default=list, blank=True)  # empty: any
    purposes = models.JSONField(default=list, blank=True)  # empty: any
    channels = models.JSONField(default=list, blank=True)  # empty: any
    # Offered APR range as fractions (0.1800 = 18%); routing refuses anything over APR_CAP.
    apr_min = models.DecimalField(max_digits=5, decimal_places=4)
    apr_max = models.DecimalField(max_digits=5, decimal_places=4)

    class Meta:
        abstract = True


class DeliveryFields(models.Model):
    """How leads reach the partner: direct post, ping-post or pull, where, and how long we
    wait for an answer."""

    delivery_mode = models.CharField(
        max_length=16, choices=DeliveryMode.choices, default=DeliveryMode.DIRECT_POST
    )
    post_url = models.URLField(blank=True, max_length=500)
    ping_url = models.URLField(blank=True, max_length=500)
    ping_timeout_ms = models.PositiveIntegerField(default=500)
    post_timeout_ms = models.PositiveIntegerField(default=10_000)

    class Meta:
        abstract = True


class LimitFields(models.Model):
    """How many leads the product takes and with whom it shares them: volume caps, the
    dedupe window, exclusivity, the most partners of a shared lead, the monthly budget
    (routing checks them: ``marketplace.routing``, ``billing.budgets``)."""

    daily_cap = models.PositiveIntegerField(null=True, blank=True)  # leads per UTC day
    monthly_cap = models.PositiveIntegerField(null=True, blank=True)
    dedupe_days = models.PositiveSmallIntegerField(default=30)
    exclusive = models.BooleanField(default=False)
    # Shared products only: the most partners a shared lead may go to when this product is
    # one of them (itself included). NULL: settings.MAX_PARTNERS_PER_REFERRAL alone.
    max_shared_partners = models.PositiveSmallIntegerField(
        null=True, blank=True, validators=[MinValueValidator(1)]
    )
    # Monthly budget cap of this product in CNY, like Partner.monthly_budget: routing skips
    # the product once this UTC month's charges on it reach the budget. NULL: no cap.
    monthly_budget = models.DecimalField(max_digits=13, decimal_places=2, null=True, blank=True)

    class Meta:
        abstract = True


RATE = [MinValueValidator(Decimal(0)), MaxValueValidator(Decimal(1))]


class ExpectationFields(models.Model):
    """What ops expect of a new product's leads, before any outcome is known: routing's
    cold-start priors (``marketplace.learning``: alpha = rate x strength, beta = (1 - rate)
    x strength). Evidence outweighs them once the product has more decided leads than
    ``prior_strength``. Defaults near the middle of DOMAIN.md's demo lenders."""

    expected_accept_rate = models.DecimalField(
        max_digits=5, decimal_places=4, default=Decimal("0.8000"), validators=RATE
    )  # accepted | delivered
    expected_approve_rate = models.DecimalField(
        max_digits=5, decimal_places=4, default=Decimal("0.5500"), validators=RATE
    )  # approved | accepted
    expected_fund_rate = models.DecimalField(
        max_digits=5, decimal_places=4, default=Decimal("0.8500"), validators=RATE
    )  # funded | approved
    expected_return_rate = models.DecimalField(
        max_digits=5, decimal_places=4, default=Decimal("0.0500"), validators=RATE
    )  # returned | accepted (partners' return rates are capped around 10-20%)
    # How many leads' worth of evidence the expectations count as.
    prior_strength = models.PositiveSmallIntegerField(default=20, validators=[MinValueValidator(1)])

    class Meta:
        abstract = True
