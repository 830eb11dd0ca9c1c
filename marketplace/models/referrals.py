"""Referrals: one applicant's request after a decline, anonymised for routing."""

from __future__ import annotations

import uuid

from django.db import models
from django.db.models import Q

from consent.models import ConsentGrant, Subject
from partners.models import TrafficSource


class ReferralStatus(models.TextChoices):
    # The one status that is not terminal: leads are being posted or pinged.
    ROUTED = "routed", "Routed, being distributed"
    # Terminal: nothing more will happen to the referral (marketplace.dispatch.settle).
    DISTRIBUTED = "distributed", "Distributed (a partner holds the lead)"
    NO_MATCH = "no_match", "No partner matched"
    NOT_ROUTABLE = "not_routable", "Not routable (no valid consent)"
    WITHDRAWN = "withdrawn", "Consent withdrawn before distribution"


class Referral(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    source = models.ForeignKey(TrafficSource, on_delete=models.PROTECT, related_name="referrals")
    # Source's own application id, for its reconciliation; unique per source when given.
    source_reference = models.CharField(max_length=80, blank=True)
    subject = models.ForeignKey(Subject, on_delete=models.PROTECT, related_name="+")
    grant = models.ForeignKey(ConsentGrant, null=True, on_delete=models.PROTECT, related_name="+")
    is_sandbox = models.BooleanField(default=False)
    # The loan asked for.
    amount = models.DecimalField(max_digits=13, decimal_places=2)
    currency = models.CharField(max_length=3, default="CNY")
    term_months = models.PositiveSmallIntegerField()
    purpose = models.CharField(max_length=40)
    # The operator's view of the applicant, anonymised for routing.
    risk_tier = models.CharField(max_length=2)
    decline_reason = models.CharField(max_length=80)
    channel = models.CharField(max_length=40)
    region = models.CharField(max_length=10)  # ISO 3166-2, e.g. CN-GD
    age = models.PositiveSmallIntegerField()
    income_band_floor = models.DecimalField(max_digits=13, decimal_places=2)  # monthly, CNY
    employment_type = models.CharField(max_length=40)
    status = models.CharField(max_length=16, choices=ReferralStatus.choices)
    status_reason = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    # A routed referral still not terminal by then is overdue: the admin lists it and the
    # outbox sweeper dispatches it again. NULL for a referral terminal at intake.
    settle_by = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["source", "source_reference"],
                condition=~Q(source_reference=""),
                name="referral_unique_source_reference",
            )
        ]
        indexes = [
            models.Index(
                fields=["settle_by"],
                condition=Q(status="routed"),
                name="referral_unsettled_by_deadline",
            )
        ]

    def __str__(self) -> str:
        return f"Referral {self.id}"
