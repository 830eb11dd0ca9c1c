"""The strategy lab's per-arm results of each running experiment, as the dashboard reads
them (``billing.lab_figures`` writes them; ``marketplace.experiments.results`` computes
them). A row per experiment, rewritten whole: the dashboard reads one small table instead
of every routing decision, lead, event and charge of every running experiment."""

from __future__ import annotations

from django.db import models

from marketplace.models import Experiment


class ExperimentFigures(models.Model):
    experiment = models.OneToOneField(
        Experiment, on_delete=models.CASCADE, primary_key=True, related_name="+"
    )
    # The results are of this bucket version's referrals (a restart counts from zero).
    bucket_version = models.PositiveIntegerField()
    computed_at = models.DateTimeField()
    referrals = models.PositiveIntegerField()  # all arms
    conversion_stage = models.CharField(max_length=12)  # the stage conversion is of
    currency = models.CharField(max_length=3)  # revenue per referral is in it
    alpha = models.DecimalField(max_digits=4, decimal_places=3)
    sample_ratio_p = models.FloatField()
    sample_ratio_mismatch = models.BooleanField()
    stop_advice = models.CharField(max_length=200, blank=True)  # empty: keep running
    winner = models.CharField(max_length=40, blank=True)
    # Per arm, in the lab's order (control first): key, is_control, strategy, weight,
    # referrals, funnel counts, and each interval as [estimate, low, high] with null ends
    # where the lab has too little data for one (its "not enough data"). Counts, rates and
    # money as text only: no personal data.
    arms = models.JSONField(default=list)

    class Meta:
        verbose_name_plural = "experiment figures"

    def __str__(self) -> str:
        return f"Figures of experiment {self.experiment_id} at {self.computed_at:%Y-%m-%d %H:%M}"
