"""Referrals, leads, delivery attempts and partner-reported events.

No personal data here: a referral holds only the anonymised attributes routing needs
(tier, amount, term, region, age, income band) and points at its vault subject and grant.
"""

from __future__ import annotations

import uuid

from django.db import models
from django.db.models import Q

from consent.models import ConsentGrant, Subject
from partners.models import DeliveryMode, Partner, Product, TrafficSource


class ReferralStatus(models.TextChoices):
    NOT_ROUTABLE = "not_routable", "Not routable (no valid consent)"
    NO_MATCH = "no_match", "No partner matched"
    ROUTED = "routed", "Routed to partners"


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

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["source", "source_reference"],
                condition=~Q(source_reference=""),
                name="referral_unique_source_reference",
            )
        ]

    def __str__(self) -> str:
        return f"Referral {self.id}"


class LeadStatus(models.TextChoices):
    MATCHED = "matched", "Matched, awaiting delivery"
    DELIVERING = "delivering", "Being posted"
    AVAILABLE = "available", "Available to pull"
    DELIVERED = "delivered", "Delivered"
    POST_REJECTED = "post_rejected", "Rejected by the partner on post"
    DELIVERY_FAILED = "delivery_failed", "Delivery failed"
    BLOCKED = "blocked", "Blocked by consent"
    ACCEPTED = "accepted", "Accepted"
    REJECTED = "rejected", "Rejected"
    APPROVED = "approved", "Approved"
    FUNDED = "funded", "Funded"
    RETURNED = "returned", "Returned"


# Statuses in which the partner has the lead and may report outcomes.
REPORTABLE_STATUSES = {
    LeadStatus.DELIVERED,
    LeadStatus.ACCEPTED,
    LeadStatus.REJECTED,
    LeadStatus.APPROVED,
    LeadStatus.FUNDED,
    LeadStatus.RETURNED,
}


class Lead(models.Model):
    """A referral as delivered to one partner."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    referral = models.ForeignKey(Referral, on_delete=models.PROTECT, related_name="leads")
    partner = models.ForeignKey(Partner, on_delete=models.PROTECT, related_name="leads")
    product = models.ForeignKey(Product, on_delete=models.PROTECT, related_name="leads")
    # Denormalised from the referral so dedupe windows are one indexed lookup.
    subject = models.ForeignKey(Subject, on_delete=models.PROTECT, related_name="+")
    is_sandbox = models.BooleanField(default=False)
    delivery_mode = models.CharField(max_length=16, choices=DeliveryMode.choices)
    status = models.CharField(max_length=16, choices=LeadStatus.choices)
    partner_reference = models.CharField(max_length=120, blank=True)
    # The winning bid for a lead sold at a ping-post auction (CNY); billing charges it as
    # the lead's CPL instead of the fee schedule's. NULL for direct-post and pull leads.
    bid_amount = models.DecimalField(max_digits=13, decimal_places=2, null=True, blank=True)
    delivery_attempts = models.PositiveSmallIntegerField(default=0)
    # While ``delivering``: until when the claiming worker may post (see delivery._claim).
    claim_expires_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    # Latest outcome values reported by the partner (the events hold the history).
    approved_amount = models.DecimalField(max_digits=13, decimal_places=2, null=True, blank=True)
    approved_apr = models.DecimalField(max_digits=5, decimal_places=4, null=True, blank=True)
    funded_principal = models.DecimalField(max_digits=13, decimal_places=2, null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["referral", "partner"], name="lead_once_per_partner")
        ]
        indexes = [
            models.Index(fields=["partner", "created_at"]),
            models.Index(fields=["partner", "subject", "created_at"]),
            models.Index(fields=["product", "created_at"]),
        ]

    def __str__(self) -> str:
        return f"Lead {self.id}"


class AttemptOutcome(models.TextChoices):
    SUCCESS = "success", "Success"
    FAILURE = "failure", "Failure (partner said no)"
    ERROR = "error", "Error"


class DeliveryAttempt(models.Model):
    lead = models.ForeignKey(Lead, on_delete=models.CASCADE, related_name="attempts")
    kind = models.CharField(max_length=8, default="post")
    url = models.URLField(max_length=500)
    started_at = models.DateTimeField()
    latency_ms = models.PositiveIntegerField()
    http_status = models.PositiveSmallIntegerField(null=True, blank=True)
    outcome = models.CharField(max_length=8, choices=AttemptOutcome.choices)
    reason = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["-started_at"]


class EventType(models.TextChoices):
    ACCEPTED = "accepted", "Accepted"
    REJECTED = "rejected", "Rejected"
    APPROVED = "approved", "Approved"
    FUNDED = "funded", "Funded"
    RETURNED = "returned", "Returned"
    # The partner takes back one of its earlier events (e.g. a funding that was cancelled);
    # ``reverses`` names it. Billing books a negative entry for what it charged.
    REVERSAL = "reversal", "Reversal of an earlier event"


class LeadEvent(models.Model):
    """An outcome a partner reported. Idempotent by the partner's own event id."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    lead = models.ForeignKey(Lead, on_delete=models.PROTECT, related_name="events")
    partner = models.ForeignKey(Partner, on_delete=models.PROTECT, related_name="+")
    external_id = models.CharField(max_length=120)
    type = models.CharField(max_length=16, choices=EventType.choices)
    occurred_at = models.DateTimeField()
    received_at = models.DateTimeField(auto_now_add=True)
    amount = models.DecimalField(max_digits=13, decimal_places=2, null=True, blank=True)
    apr = models.DecimalField(max_digits=5, decimal_places=4, null=True, blank=True)
    principal = models.DecimalField(max_digits=13, decimal_places=2, null=True, blank=True)
    reason = models.CharField(max_length=80, blank=True)
    reverses = models.OneToOneField(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="reversed_by"
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["partner", "external_id"], name="event_once_per_partner_id"
            ),
            models.CheckConstraint(
                condition=Q(amount__isnull=True) | Q(amount__gt=0), name="event_amount_positive"
            ),
            models.CheckConstraint(
                condition=Q(principal__isnull=True) | Q(principal__gt=0),
                name="event_principal_positive",
            ),
        ]
        indexes = [models.Index(fields=["occurred_at"])]

    def __str__(self) -> str:
        return f"{self.type} {self.external_id}"
