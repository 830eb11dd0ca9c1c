"""Why a referral went where it went: one row per routing decision."""

from __future__ import annotations

from django.db import models

from marketplace.models.referrals import Referral


class RoutingDecision(models.Model):
    """A referral's routing decision: the strategy (and experiment arm) it was routed by,
    and for each candidate its eligibility (or the reason codes it was screened out for,
    ``marketplace.eligibility``), posterior means, sampled probabilities, expected value,
    score and rank, and the winners. One INSERT at intake (candidates as one JSON column);
    auction winners are filled in at the award. No personal data: product and partner ids,
    the anonymised segment and numbers."""

    referral = models.OneToOneField(
        Referral, primary_key=True, on_delete=models.CASCADE, related_name="decision"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    strategy_key = models.CharField(max_length=80)
    strategy_version = models.PositiveIntegerField()
    strategy_kind = models.CharField(max_length=24)
    explore = models.BooleanField()
    experiment_key = models.CharField(max_length=80, blank=True)
    arm_key = models.CharField(max_length=80, blank=True)
    bucket_version = models.PositiveIntegerField(null=True, blank=True)
    segment = models.CharField(max_length=80)  # marketplace.bands.segment_key
    # [{"product", "partner", "partner_name", "eligible", "reasons", "means", "sampled",
    #   "expected_value", "score", "rank", "chosen"}], best score first, then the rejected.
    candidates = models.JSONField(default=list)
    # Product ids given the lead (direct, pull, waterfall); auction winners at the award.
    winners = models.JSONField(default=list)

    def __str__(self) -> str:
        return f"decision for {self.referral_id}"
