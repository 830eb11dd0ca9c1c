"""Partner-reported events on leads."""

from __future__ import annotations

import uuid

from django.db import models
from django.db.models import Q

from marketplace.models.leads import Lead
from partners.currencies import Currency
from partners.models import Partner


class EventType(models.TextChoices):
    ACCEPTED = "accepted", "Accepted"
    REJECTED = "rejected", "Rejected"
    APPROVED = "approved", "Approved"
    FUNDED = "funded", "Funded"
    RETURNED = "returned", "Returned"
    # The partner takes back one of its earlier events (e.g. a funding that was cancelled);
    # ``reverses`` names it. Billing books a negative entry for what it charged.
    REVERSAL = "reversal", "Reversal of an earlier event"
    # Revenue the partner recognised on a funded loan for one period (interest and fees
    # actually collected, in the event's ``currency``) in ``amount``; billing charges the
    # revenue share on it. Does not change the lead's status; at most one standing per lead
    # and ``revenue_period``.
    REVENUE = "revenue", "Revenue earned on a funded loan"


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
    # The currency of ``amount`` / ``principal`` (as the partner said, else the referral's);
    # empty exactly when the event carries neither.
    currency = models.CharField(max_length=3, choices=Currency.choices, blank=True, default="")
    reason = models.CharField(max_length=80, blank=True)
    # For a revenue event: the month the revenue was earned in, "YYYY-MM" (the month of
    # occurred_at when the partner did not say); one standing per lead and period. Empty
    # for other events.
    revenue_period = models.CharField(max_length=7, blank=True, default="")
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
            # Every amount received carries its currency, and nothing else claims one.
            models.CheckConstraint(
                condition=Q(amount__isnull=True, principal__isnull=True, currency="")
                | (
                    (Q(amount__isnull=False) | Q(principal__isnull=False))
                    & Q(currency__in=Currency.values)
                ),
                name="event_amount_has_currency",
            ),
        ]
        indexes = [
            models.Index(fields=["occurred_at"]),
            # Events received since the learner's watermark (marketplace.learning).
            models.Index(fields=["received_at"], name="event_received_at"),
            # Billing numbers a partner's units of a month by event time (marginal tiers).
            models.Index(
                fields=["partner", "type", "occurred_at", "external_id"],
                name="event_partner_units",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.type} {self.external_id}"
