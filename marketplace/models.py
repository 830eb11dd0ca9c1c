"""Referrals, ping-post auctions, leads, delivery attempts and partner-reported events.

No personal data here: a referral holds only the anonymised attributes routing needs
(tier, amount, term, region, age, income band) and points at its vault subject and grant.
"""

from __future__ import annotations

import uuid

from django.db import models
from django.db.models import Q
from django.utils import timezone

from consent.models import ConsentGrant, Subject
from partners.currencies import Currency
from partners.models import DeliveryMode, Partner, Product, TrafficSource


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


class AuctionMode(models.TextChoices):
    EXCLUSIVE = "exclusive", "Exclusive (one winner)"
    SHARED = "shared", "Shared (up to N winners)"


class AuctionStatus(models.TextChoices):
    PENDING = "pending", "Pending (pinging partners)"
    AWARDED = "awarded", "Awarded to the highest bidders"
    NO_BIDS = "no_bids", "No partner bid"


class Auction(models.Model):
    """A ping-post auction for one referral: anonymised pings to the candidate products,
    then the post to the winners (see marketplace.auctions)."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    referral = models.OneToOneField(Referral, on_delete=models.PROTECT, related_name="auction")
    mode = models.CharField(max_length=10, choices=AuctionMode.choices)
    max_winners = models.PositiveSmallIntegerField()
    # Wall-clock limit of the whole fan-out; each ping is also bounded by its product's
    # ping_timeout_ms.
    budget_ms = models.PositiveIntegerField()
    # Product ids routing chose to ping, in consumer order (cheapest APR first), fixed at
    # intake so a catalogue change meanwhile does not change who is asked.
    candidate_product_ids = models.JSONField(default=list)
    status = models.CharField(
        max_length=10, choices=AuctionStatus.choices, default=AuctionStatus.PENDING
    )
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # From the worker starting the auction to its winners being stored (pings included).
    wall_ms = models.PositiveIntegerField(null=True, blank=True)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(max_winners__gte=1), name="auction_has_a_winner")
        ]

    def __str__(self) -> str:
        return f"Auction {self.id}"


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


class PingAward(models.TextChoices):
    NONE = "none", "Not awarded"
    WON = "won", "Won: the lead is posted to this partner"
    POST_FAILED = "post_failed", "Won, but the post was rejected or failed: fell back"


class PingAttempt(models.Model):
    """One anonymised ping to one partner in an auction, and what came of it. Written in
    one batch when the fan-out ends, so no database work delays the pings."""

    auction = models.ForeignKey(Auction, on_delete=models.CASCADE, related_name="pings")
    partner = models.ForeignKey(Partner, on_delete=models.PROTECT, related_name="+")
    product = models.ForeignKey(Product, on_delete=models.PROTECT, related_name="+")
    # Our id for this ping (also its ``webhook-id``); tells the partner nothing else.
    ping_id = models.CharField(max_length=40, unique=True)
    url = models.URLField(max_length=500)
    started_at = models.DateTimeField()
    latency_ms = models.PositiveIntegerField()
    http_status = models.PositiveSmallIntegerField(null=True, blank=True)
    outcome = models.CharField(max_length=8, choices=AttemptOutcome.choices)
    reason = models.CharField(max_length=200, blank=True)
    # The partner's bid per lead, in ``bid_currency``; NULL for a reject, an error, or an
    # accept without a price (then the fee schedule's CPL applies).
    bid = models.DecimalField(max_digits=13, decimal_places=2, null=True, blank=True)
    # The ping's (the referral's) currency when there is a bid, else empty: an answer
    # bidding in another currency is an error, never relabelled.
    bid_currency = models.CharField(max_length=3, choices=Currency.choices, blank=True, default="")
    # Place among the bidders (1 = best); NULL for non-bidders.
    rank = models.PositiveSmallIntegerField(null=True, blank=True)
    award = models.CharField(max_length=12, choices=PingAward.choices, default=PingAward.NONE)
    lead = models.OneToOneField(
        Lead, null=True, blank=True, on_delete=models.PROTECT, related_name="ping"
    )

    class Meta:
        ordering = ["rank", "started_at"]
        constraints = [
            models.UniqueConstraint(fields=["auction", "partner"], name="ping_once_per_partner"),
            models.CheckConstraint(
                condition=Q(bid__isnull=True) | Q(bid__gt=0), name="ping_bid_positive"
            ),
            models.CheckConstraint(
                condition=Q(bid__isnull=True, bid_currency="")
                | (Q(bid__isnull=False) & Q(bid_currency__in=Currency.values)),
                name="ping_bid_has_currency",
            ),
        ]

    def __str__(self) -> str:
        return f"Ping {self.ping_id}"


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
            # Billing numbers a partner's units of a month by event time (marginal tiers).
            models.Index(
                fields=["partner", "type", "occurred_at", "external_id"],
                name="event_partner_units",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.type} {self.external_id}"


class OutboxMessage(models.Model):
    """A task for a worker, written in the same transaction as the change that needs it
    (a transactional outbox: marketplace.outbox). Published after commit, published again
    by the sweeper while not done by its deadline, done when its task has finished."""

    # Also the Celery task id, so every publication of one message is recognisably one.
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    task = models.CharField(max_length=120)  # registered Celery task name
    args = models.JSONField(default=list)  # ids and dates only: never personal data
    queue = models.CharField(max_length=40, blank=True)
    # The referral whose distribution this is part of (it is terminal only when none of
    # its messages is left undone); NULL for other work (billing).
    referral = models.ForeignKey(
        Referral,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="+",
        db_index=False,  # outbox_undone_per_referral is the one lookup
    )
    created_at = models.DateTimeField(default=timezone.now)
    # Not before (a retry's countdown).
    due_at = models.DateTimeField(default=timezone.now)
    # Not done by then: the sweeper publishes it again (and moves this on).
    deadline = models.DateTimeField()
    published_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0)  # publications so far
    done_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [
            models.Index(
                fields=["deadline"],
                condition=Q(done_at__isnull=True),
                name="outbox_undone_by_deadline",
            ),
            models.Index(
                fields=["referral"],
                condition=Q(done_at__isnull=True),
                name="outbox_undone_per_referral",
            ),
            models.Index(fields=["done_at"], name="outbox_done_at"),
        ]

    def __str__(self) -> str:
        return f"{self.task} {self.id}"
