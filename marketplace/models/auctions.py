"""Ping-post auctions and the pings sent in them."""

from __future__ import annotations

import uuid

from django.db import models
from django.db.models import Q

from marketplace.models.referrals import Referral
from partners.currencies import Currency
from partners.models import Partner, Product


class AttemptOutcome(models.TextChoices):
    SUCCESS = "success", "Success"
    FAILURE = "failure", "Failure (partner said no)"
    ERROR = "error", "Error"


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
        "marketplace.Lead", null=True, blank=True, on_delete=models.PROTECT, related_name="ping"
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
