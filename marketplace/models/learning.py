"""What routing learns from and ranks by: conversion counts per product, segment, stage and
day (``marketplace.learning`` keeps them), and each product's fee card (written by billing
through ``marketplace.fee_cards``)."""

from __future__ import annotations

from django.db import models
from django.db.models import F, Q

from partners.currencies import Currency
from partners.models import Product


class Stage(models.TextChoices):
    ACCEPT = "accept", "Accepted | delivered"
    APPROVE = "approve", "Approved | accepted"
    FUND = "fund", "Funded | approved"
    RETURN = "return", "Returned | accepted"


class ConversionCounts(models.Model):
    """Decided trials and successes of one funnel stage for one product's leads of one
    segment (``marketplace.bands.segment_key``) created on one UTC day. Derived data: the
    refresh task recomputes a (product, day) bucket whole whenever one of its leads moves,
    so running it twice changes nothing."""

    id = models.BigAutoField(primary_key=True)
    product = models.ForeignKey(Product, on_delete=models.CASCADE, related_name="+")
    segment = models.CharField(max_length=80)
    stage = models.CharField(max_length=8, choices=Stage.choices)
    day = models.DateField()  # the leads' creation day (UTC)
    trials = models.PositiveIntegerField()
    successes = models.PositiveIntegerField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["product", "day", "segment", "stage"], name="conversion_counts_bucket"
            ),
            models.CheckConstraint(
                condition=Q(successes__lte=F("trials")), name="conversion_successes_le_trials"
            ),
        ]
        indexes = [models.Index(fields=["day"], name="conversion_counts_day")]

    def __str__(self) -> str:
        return f"{self.product_id} {self.segment} {self.stage} {self.day}"


class LearningWatermark(models.Model):
    """One row: lead changes up to ``through`` are in the counts."""

    id = models.PositiveSmallIntegerField(primary_key=True, default=1)
    through = models.DateTimeField()


class ProductFeeCard(models.Model):
    """What a product pays per billable stage now, for ranking: a copy of the fee schedule
    in force (billing owns schedules; marketplace must not import billing, so billing
    writes this card whenever a schedule is created or changed, see
    ``marketplace.fee_cards.set_fee_card``). Never used to charge anyone."""

    product = models.OneToOneField(
        Product, primary_key=True, on_delete=models.CASCADE, related_name="+"
    )
    currency = models.CharField(max_length=3, choices=Currency.choices)
    cpl = models.DecimalField(max_digits=13, decimal_places=2)  # per accepted lead
    cpa = models.DecimalField(max_digits=13, decimal_places=2)  # per approval
    cpf_rate = models.DecimalField(max_digits=5, decimal_places=4)  # of funded principal
    cpf_min = models.DecimalField(max_digits=13, decimal_places=2)
    cpf_max = models.DecimalField(max_digits=13, decimal_places=2, null=True, blank=True)
    # One unit of ``currency`` in the platform currency when the card was written (1 when
    # the same); NULL: no rate known, the card counts for nothing until one is.
    to_platform = models.DecimalField(max_digits=18, decimal_places=8, null=True, blank=True)
    schedule_ref = models.CharField(max_length=40, blank=True)  # billing's schedule id
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"fee card of {self.product_id}"
