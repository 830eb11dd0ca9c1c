"""Leads (a referral as delivered to one partner) and their delivery attempts."""

from __future__ import annotations

import uuid

from django.db import models
from django.db.models import Q

from consent.models import Subject
from marketplace.models.auctions import AttemptOutcome, Auction
from marketplace.models.referrals import Referral
from partners.currencies import Currency
from partners.models import DeliveryMode, Partner, Product


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
    # The winning bid for a lead sold at a ping-post auction, in ``bid_currency``; billing
    # charges it as the lead's CPL instead of the fee schedule's (converted when the
    # schedule's currency differs). NULL for direct-post and pull leads.
    bid_amount = models.DecimalField(max_digits=13, decimal_places=2, null=True, blank=True)
    # The bid's currency: always the ping's (the referral's) currency, since a bid in any
    # other is refused at the auction. Empty exactly when there is no bid.
    bid_currency = models.CharField(max_length=3, choices=Currency.choices, blank=True, default="")
    # The auction this lead was won at (ping-post only).
    auction = models.ForeignKey(
        Auction, null=True, blank=True, on_delete=models.PROTECT, related_name="leads"
    )
    delivery_attempts = models.PositiveSmallIntegerField(default=0)
    # While ``delivering``: until when the claiming worker may post (see delivery._claim).
    claim_expires_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    # Latest outcome values reported by the partner (the events hold the history).
    approved_amount = models.DecimalField(max_digits=13, decimal_places=2, null=True, blank=True)
    approved_apr = models.DecimalField(max_digits=5, decimal_places=4, null=True, blank=True)
    funded_principal = models.DecimalField(max_digits=13, decimal_places=2, null=True, blank=True)
    # The currency of approved_amount and funded_principal (standing approved and funded
    # events of a lead share one: events.py refuses a mismatch); empty when both are NULL.
    outcome_currency = models.CharField(
        max_length=3, choices=Currency.choices, blank=True, default=""
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["referral", "partner"], name="lead_once_per_partner"),
            # Every amount carries its currency: a bid is never a bare number.
            models.CheckConstraint(
                condition=Q(bid_amount__isnull=True, bid_currency="")
                | (Q(bid_amount__isnull=False) & Q(bid_currency__in=Currency.values)),
                name="lead_bid_has_currency",
            ),
            models.CheckConstraint(
                condition=Q(
                    approved_amount__isnull=True, funded_principal__isnull=True, outcome_currency=""
                )
                | (
                    (Q(approved_amount__isnull=False) | Q(funded_principal__isnull=False))
                    & Q(outcome_currency__in=Currency.values)
                ),
                name="lead_outcome_has_currency",
            ),
        ]
        indexes = [
            models.Index(fields=["partner", "created_at"]),
            models.Index(fields=["partner", "subject", "created_at"]),
            models.Index(fields=["product", "created_at"]),
            # Leads moved since the learner's watermark (marketplace.learning).
            models.Index(fields=["updated_at"], name="lead_updated_at"),
        ]

    def __str__(self) -> str:
        return f"Lead {self.id}"


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

    def __str__(self) -> str:
        status = self.http_status or "-"
        return f"{self.kind} {self.started_at:%Y-%m-%d %H:%M:%S} UTC: {self.outcome} ({status})"
