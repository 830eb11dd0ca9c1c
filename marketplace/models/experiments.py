"""The strategy lab's records: named routing strategies and their append-only versions,
the default strategy's promotions, experiments and their arms (``marketplace.experiments``
holds the rules; ``marketplace.strategy_spec`` is what routing reads)."""

from __future__ import annotations

import uuid
from decimal import Decimal

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q

from marketplace.strategy_spec import StrategyKind


class Strategy(models.Model):
    """A named way of distributing a referral's candidates; what it does is its versions'."""

    key = models.SlugField(max_length=60, unique=True)  # stable; routing decisions name it
    name = models.CharField(max_length=120)
    description = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["key"]
        verbose_name_plural = "strategies"

    def __str__(self) -> str:
        return f"{self.name} ({self.key})"


class StrategyVersion(models.Model):
    """One version of a strategy's parameters. Never edited: a change is a new version
    (``experiments.strategies.create_version``), so a decision, an arm or a promotion
    that names a version always means the same parameters."""

    strategy = models.ForeignKey(Strategy, on_delete=models.PROTECT, related_name="versions")
    version = models.PositiveIntegerField()
    kind = models.CharField(max_length=24, choices=StrategyKind.choices)
    # None: the platform's MAX_PARTNERS_PER_REFERRAL.
    max_partners = models.PositiveSmallIntegerField(
        null=True, blank=True, validators=[MinValueValidator(1)]
    )
    explore = models.BooleanField(default=True)  # Thompson sampling, or posterior means
    return_penalty = models.DecimalField(
        max_digits=6, decimal_places=3, default=Decimal("1"), validators=[MinValueValidator(0)]
    )
    params = models.JSONField(default=dict, blank=True)  # kind-specific extras, text values
    note = models.CharField(max_length=200, blank=True)  # why this version exists
    # The platform's default: set only by ``experiments.strategies.promote_version``.
    is_default = models.BooleanField(default=False, editable=False)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["strategy__key", "-version"]
        constraints = [
            models.UniqueConstraint(fields=["strategy", "version"], name="strategy_version_once"),
            # At most one default at any time; with none, the built-in DEFAULT_STRATEGY.
            models.UniqueConstraint(
                fields=["is_default"], condition=Q(is_default=True), name="one_default_strategy"
            ),
            models.CheckConstraint(
                condition=Q(return_penalty__gte=0), name="strategy_return_penalty_not_negative"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.strategy.key} v{self.version}"


class ExperimentStatus(models.TextChoices):
    DRAFT = "draft", "Draft"
    RUNNING = "running", "Running"
    STOPPED = "stopped", "Stopped"
    PROMOTED = "promoted", "Promoted (an arm became the default)"


class PrimaryMetric(models.TextChoices):
    FUNDED = "funded", "Funded conversion"
    ACCEPTED = "accepted", "Accepted conversion"
    REVENUE = "revenue", "Revenue per referral"


class Experiment(models.Model):
    """Live referrals split between arms by a hash of the applicant's vault id
    (``experiments.assignment``). The assignment settings (layer range, coverage, arms and
    weights, bucket version) are frozen while it runs: the arms of past referrals are
    recomputed from them."""

    key = models.SlugField(max_length=60, unique=True)  # the hash seed (with bucket_version)
    name = models.CharField(max_length=120)
    hypothesis = models.TextField(blank=True)
    # Experiments of one layer get disjoint ranges of it: they never share a subject.
    layer = models.SlugField(max_length=60, default="routing")
    layer_share = models.DecimalField(
        max_digits=5,
        decimal_places=3,
        default=Decimal("1"),
        validators=[MinValueValidator(Decimal("0.001")), MaxValueValidator(1)],
    )
    # The range of the layer given at start (GrowthBook namespace [start, end)).
    namespace_start = models.DecimalField(max_digits=5, decimal_places=3, null=True, blank=True)
    namespace_end = models.DecimalField(max_digits=5, decimal_places=3, null=True, blank=True)
    # Share of the range's subjects in the experiment (GrowthBook coverage).
    coverage = models.DecimalField(
        max_digits=5,
        decimal_places=3,
        default=Decimal("1"),
        validators=[MinValueValidator(Decimal("0.001")), MaxValueValidator(1)],
    )
    # Part of the hash seed: a new bucket version reshuffles everyone (a clean restart).
    bucket_version = models.PositiveIntegerField(default=1)
    status = models.CharField(
        max_length=10, choices=ExperimentStatus.choices, default=ExperimentStatus.DRAFT
    )
    primary_metric = models.CharField(
        max_length=10, choices=PrimaryMetric.choices, default=PrimaryMetric.FUNDED
    )
    # Stop rule: at this many referrals in all arms, stop whatever the intervals say.
    max_referrals = models.PositiveIntegerField(default=20000)
    alpha = models.DecimalField(max_digits=4, decimal_places=3, default=Decimal("0.05"))
    currency = models.CharField(max_length=3, default="CNY")  # revenue is compared in it
    started_at = models.DateTimeField(null=True, blank=True)
    stopped_at = models.DateTimeField(null=True, blank=True)
    stop_reason = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(
                condition=Q(status="draft") | Q(started_at__isnull=False),
                name="experiment_started_has_time",
            ),
            models.CheckConstraint(
                condition=Q(alpha__gt=0) & Q(alpha__lt=1), name="experiment_alpha_in_range"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.key})"


class Arm(models.Model):
    experiment = models.ForeignKey(Experiment, on_delete=models.CASCADE, related_name="arms")
    key = models.SlugField(max_length=40)
    is_control = models.BooleanField(default=False)
    strategy_version = models.ForeignKey(
        StrategyVersion, on_delete=models.PROTECT, related_name="arms"
    )
    weight = models.DecimalField(
        max_digits=6,
        decimal_places=3,
        default=Decimal("1"),
        validators=[MinValueValidator(Decimal("0.001"))],
    )

    class Meta:
        ordering = ["experiment", "-is_control", "key"]
        constraints = [
            models.UniqueConstraint(fields=["experiment", "key"], name="arm_key_once"),
            models.UniqueConstraint(
                fields=["experiment"], condition=Q(is_control=True), name="arm_one_control"
            ),
            models.CheckConstraint(condition=Q(weight__gt=0), name="arm_weight_positive"),
        ]

    def __str__(self) -> str:
        return f"{self.experiment.key}/{self.key}"


class StrategyPromotion(models.Model):
    """Who made which version the default, when and why (append-only)."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    strategy_version = models.ForeignKey(
        StrategyVersion, on_delete=models.PROTECT, related_name="promotions"
    )
    previous = models.ForeignKey(
        StrategyVersion, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    promoted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    promoted_at = models.DateTimeField(auto_now_add=True)
    reason = models.TextField()
    # The experiment whose winning arm this was, when promoted from one.
    experiment = models.ForeignKey(
        Experiment, null=True, blank=True, on_delete=models.PROTECT, related_name="promotions"
    )
    arm = models.ForeignKey(Arm, null=True, blank=True, on_delete=models.PROTECT, related_name="+")

    class Meta:
        ordering = ["-promoted_at"]
        constraints = [
            models.CheckConstraint(condition=~Q(reason=""), name="promotion_has_reason"),
        ]

    def __str__(self) -> str:
        return f"{self.strategy_version} promoted {self.promoted_at:%Y-%m-%d %H:%M}"
