"""Partner lenders, their products (credit boxes), API keys and webhook endpoints."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import models
from django.db.models import F, Q
from guardian.models import GroupObjectPermissionBase, UserObjectPermissionBase

from partners.product_fees import FeeFields
from partners.product_terms import (
    CreditBoxFields,
    DeliveryFields,
    ExpectationFields,
    LimitFields,
)
from partners.product_terms import DeliveryMode as DeliveryMode  # re-exported: imported from here

RISK_TIERS = [f"R{i}" for i in range(1, 9)]
# Applicants' employment types, as intake accepts them (marketplace.api) and products list.
EMPLOYMENT_TYPES = ["employed", "self_employed", "civil_servant", "student", "retired", "other"]


class PartnerStatus(models.TextChoices):
    ONBOARDING = "onboarding", "Onboarding"
    SANDBOX = "sandbox", "Sandbox"
    LIVE = "live", "Live"
    PAUSED = "paused", "Paused"
    OFFBOARDED = "offboarded", "Offboarded"


class Partner(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(max_length=120, unique=True)
    slug = models.SlugField(max_length=60, unique=True)
    legal_name = models.CharField(max_length=200)
    licence_number = models.CharField(max_length=80, blank=True)
    status = models.CharField(
        max_length=16, choices=PartnerStatus.choices, default=PartnerStatus.ONBOARDING
    )
    contact_name = models.CharField(max_length=120, blank=True)
    contact_email = models.EmailField(blank=True)
    billing_address = models.TextField(blank=True)
    # Monthly budget cap in CNY: once this UTC month's charges net of credits reach it,
    # billing holds routing (a RoutingHold for the budget) until the next month or a higher
    # budget (billing.budgets). NULL: no cap.
    monthly_budget = models.DecimalField(max_digits=13, decimal_places=2, null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    # Any change bumps it, so per-process product indexes notice (marketplace.matching).
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(
                condition=Q(monthly_budget__isnull=True) | Q(monthly_budget__gte=0),
                name="partner_budget_non_negative",
            )
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def is_routable(self) -> bool:
        return self.status in {PartnerStatus.LIVE, PartnerStatus.SANDBOX}


class Product(
    CreditBoxFields, DeliveryFields, LimitFields, ExpectationFields, FeeFields, models.Model
):
    """A partner's product: its credit box (what it accepts), how it wants leads delivered
    and its limits, each a group of fields in ``partners.product_terms``."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    partner = models.ForeignKey(Partner, on_delete=models.PROTECT, related_name="products")
    name = models.CharField(max_length=120)
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    # Any change bumps it, so per-process product indexes notice (marketplace.matching).
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["partner__name", "name"]
        constraints = [
            models.CheckConstraint(
                condition=Q(min_amount__gt=0) & Q(max_amount__gte=F("min_amount")),
                name="product_amount_range",
            ),
            models.CheckConstraint(
                condition=Q(max_term_months__gte=F("min_term_months")),
                name="product_term_range",
            ),
            models.CheckConstraint(
                condition=Q(apr_min__gte=0) & Q(apr_max__gte=F("apr_min")),
                name="product_apr_range",
            ),
            models.CheckConstraint(
                condition=Q(max_age__gte=F("min_age")), name="product_age_range"
            ),
            models.CheckConstraint(
                condition=(Q(max_shared_partners__isnull=True) | Q(max_shared_partners__gte=1))
                & (Q(monthly_budget__isnull=True) | Q(monthly_budget__gte=0)),
                name="product_sharing_and_budget",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.partner.name} / {self.name}"


class HoldReason(models.TextChoices):
    """Who holds routing: each owner places and lifts only its own reason."""

    OPS_PAUSE = "ops_pause", "Paused by ops"
    CREDIT_LIMIT = "credit_limit", "Over credit limit"  # billing.credit
    BUDGET = "budget", "Monthly budget reached"  # billing.budgets


class RoutingHold(models.Model):
    """One reason routing to a partner (``product`` NULL) or to one of its products is held
    although the partner is live. Holds of different reasons stand side by side, so lifting
    one (the budget's, say) never lifts another (the credit limit's, or ops').

    Rows are history: lifting sets ``lifted_at`` and the row stays (who held, why, when,
    who lifted); a new hold is a new row. At most one active row per partner or product
    and reason (the partial unique constraints). Written only through ``partners.holds``,
    which also bumps the partner's or product's ``updated_at`` so every process's product
    index notices."""

    id = models.BigAutoField(primary_key=True)
    partner = models.ForeignKey(Partner, on_delete=models.PROTECT, related_name="routing_holds")
    product = models.ForeignKey(
        Product, null=True, blank=True, on_delete=models.PROTECT, related_name="routing_holds"
    )
    reason = models.CharField(max_length=16, choices=HoldReason.choices)
    # Ops' own words (an ops pause); shown to staff, never to the partner.
    note = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField()
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    lifted_at = models.DateTimeField(null=True, blank=True)  # NULL: in force
    lifted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["partner", "reason"],
                condition=Q(product__isnull=True, lifted_at__isnull=True),
                name="one_active_partner_hold_per_reason",
            ),
            models.UniqueConstraint(
                fields=["product", "reason"],
                condition=Q(product__isnull=False, lifted_at__isnull=True),
                name="one_active_product_hold_per_reason",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_reason_display()} since {self.created_at:%Y-%m-%d %H:%M}"


class CatalogueVersion(models.Model):
    """One row whose ``version`` changes (to a random value) whenever a product, a partner or
    a routing hold changes: database triggers (migration 0007) set it in the changing
    transaction, whoever writes (the admin, the API, holds, a bare ``update()``). Every
    process's product index (``marketplace.matching``) rebuilds when it changes: one
    primary-key read per referral instead of an aggregate over the catalogue. On PostgreSQL
    the trigger runs at commit (deferred), so this row's lock is always the last one a
    transaction takes and cannot close a deadlock cycle."""

    id = models.PositiveSmallIntegerField(primary_key=True, default=1)
    version = models.BigIntegerField(default=0)


class CatalogueChange(models.Model):
    """Which partner (and product, when one) a committed catalogue change touched, and when:
    written by the same triggers as ``CatalogueVersion`` (migration 0009), at commit on
    PostgreSQL. A process's product index reloads only the boxes of the partners and
    products changed since it last looked (``marketplace.matching``); rows older than a
    few hours are pruned (``marketplace.sweeps``)."""

    id = models.BigAutoField(primary_key=True)
    # No foreign keys: a deleted partner's or product's change is still a change.
    partner_id = models.UUIDField()
    product_id = models.UUIDField(null=True)
    # The database's clock at the change (clock_timestamp() at commit on PostgreSQL).
    changed_at = models.DateTimeField(db_index=True)


class TrafficSource(models.Model):
    """The operator (or another licensed source) that refers declined applicants."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(max_length=120, unique=True)
    is_operator = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.name


class KeyKind(models.TextChoices):
    SOURCE = "source", "Source (creates referrals)"
    PARTNER = "partner", "Partner"


class KeyMode(models.TextChoices):
    LIVE = "live", "Live"
    SANDBOX = "sandbox", "Sandbox"


class ApiKey(models.Model):
    """An API key, stored as a lookup prefix plus a keyed hash; the key is shown once."""

    kind = models.CharField(max_length=8, choices=KeyKind.choices)
    mode = models.CharField(max_length=8, choices=KeyMode.choices, default=KeyMode.LIVE)
    partner = models.ForeignKey(
        Partner, null=True, blank=True, on_delete=models.CASCADE, related_name="api_keys"
    )
    source = models.ForeignKey(
        TrafficSource, null=True, blank=True, on_delete=models.CASCADE, related_name="api_keys"
    )
    name = models.CharField(max_length=80, blank=True)
    prefix = models.CharField(max_length=16, unique=True)
    key_hash = models.CharField(max_length=64)  # hex HMAC-SHA256(API_KEY_PEPPER, key)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    # Requests per minute for this key; NULL: settings.API_RATE_LIMIT_PER_MINUTE for partner
    # keys, unlimited for source keys (the operator's intake runs at ~1,000/s at peak).
    rate_limit_per_minute = models.PositiveIntegerField(null=True, blank=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=(
                    Q(kind="partner", partner__isnull=False, source__isnull=True)
                    | Q(kind="source", source__isnull=False, partner__isnull=True)
                ),
                name="apikey_owner_matches_kind",
            )
        ]

    def __str__(self) -> str:
        return f"{self.kind}:{self.mode}:{self.prefix}"


class WebhookEndpoint(models.Model):
    """Where we send a partner signed events (Standard Webhooks)."""

    partner = models.ForeignKey(Partner, on_delete=models.CASCADE, related_name="webhooks")
    url = models.URLField(max_length=500)
    # whsec_... secret, encrypted at rest because we must read it back to sign.
    secret_encrypted = models.BinaryField()
    # After a rotation the old secret also signs until it expires, so the partner can
    # deploy the new one without dropping a message.
    previous_secret_encrypted = models.BinaryField(null=True, blank=True)
    previous_secret_expires_at = models.DateTimeField(null=True, blank=True)
    # Event types sent here; empty means all.
    event_types = models.JSONField(default=list, blank=True)
    is_active = models.BooleanField(default=True)
    disabled_reason = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"{self.partner.name} -> {self.url}"


class MessageStatus(models.TextChoices):
    PENDING = "pending", "Pending (will be attempted)"
    DELIVERED = "delivered", "Delivered"
    FAILED = "failed", "Failed (gave up)"


class WebhookMessage(models.Model):
    """One event for one endpoint. Its id is the ``webhook-id`` header, the same on every
    retry, so the partner can drop duplicates. Payloads never carry personal data."""

    id = models.CharField(primary_key=True, max_length=40)  # msg_<hex>
    partner = models.ForeignKey(Partner, on_delete=models.CASCADE, related_name="+")
    endpoint = models.ForeignKey(WebhookEndpoint, on_delete=models.CASCADE, related_name="messages")
    event_type = models.CharField(max_length=60)
    # Per partner, a business key (e.g. "consent.withdrawn:<withdrawal id>") so enqueuing
    # the same event twice makes one message.
    dedupe_key = models.CharField(max_length=200)
    payload = models.JSONField(encoder=DjangoJSONEncoder)
    # About sandbox traffic (e.g. a sandbox lead): sandbox keys see only these.
    is_sandbox = models.BooleanField(default=False)
    status = models.CharField(
        max_length=10, choices=MessageStatus.choices, default=MessageStatus.PENDING
    )
    attempts = models.PositiveSmallIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True, db_index=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["endpoint", "dedupe_key"], name="webhook_message_once_per_endpoint"
            )
        ]
        indexes = [models.Index(fields=["partner", "created_at"])]

    def __str__(self) -> str:
        return f"{self.event_type} {self.id}"


class WebhookAttempt(models.Model):
    message = models.ForeignKey(
        WebhookMessage, on_delete=models.CASCADE, related_name="attempt_log"
    )
    attempted_at = models.DateTimeField()
    http_status = models.PositiveSmallIntegerField(null=True, blank=True)
    latency_ms = models.PositiveIntegerField()
    error = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["-attempted_at"]

    def __str__(self) -> str:
        outcome = self.http_status or self.error[:40] or "no answer"
        return f"attempt {self.attempted_at:%Y-%m-%d %H:%M:%S} UTC: {outcome}"


class IdempotencyRecord(models.Model):
    """A creating POST's outcome, replayed when the same key comes again."""

    class State(models.TextChoices):
        RUNNING = "running", "Running"
        DONE = "done", "Done"

    api_key = models.ForeignKey(ApiKey, on_delete=models.CASCADE)
    key = models.CharField(max_length=200)
    request_fingerprint = models.CharField(max_length=64)  # sha256 of method, path and body
    state = models.CharField(max_length=8, choices=State.choices, default=State.RUNNING)
    response_status = models.PositiveSmallIntegerField(null=True)
    response_body = models.JSONField(null=True, encoder=DjangoJSONEncoder)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["api_key", "key"], name="idempotency_key_per_api_key")
        ]


class ChangeRequestStatus(models.TextChoices):
    PENDING = "pending", "Pending review"
    APPROVED = "approved", "Approved and applied"
    REJECTED = "rejected", "Rejected"


class ProductChangeRequest(models.Model):
    """A partner's proposed change to one of its products. Partners never edit products
    directly: an operator approves (the change is applied in the same transaction) or
    rejects it. ``changes`` holds only the proposed fields, validated on submission and
    again on approval (the product may have changed in between)."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    # The partner id is denormalised from the product so every partner-facing query is a
    # plain filter on it, like every other row a partner can reach.
    partner = models.ForeignKey(Partner, on_delete=models.CASCADE, related_name="+")
    product = models.ForeignKey(Product, on_delete=models.CASCADE, related_name="change_requests")
    changes = models.JSONField(encoder=DjangoJSONEncoder)  # {"field": value}, as JSON
    note = models.CharField(max_length=500, blank=True)  # the partner's reason
    status = models.CharField(
        max_length=10, choices=ChangeRequestStatus.choices, default=ChangeRequestStatus.PENDING
    )
    # The key that proposed it (keys are the partner's identities in the API).
    requested_by_key = models.ForeignKey(
        ApiKey, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    decided_at = models.DateTimeField(null=True, blank=True)
    decision_note = models.CharField(max_length=500, blank=True)  # shown to the partner
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["partner", "created_at"])]
        constraints = [
            models.CheckConstraint(
                condition=Q(status="pending", decided_at__isnull=True)
                | (~Q(status="pending") & Q(decided_at__isnull=False)),
                name="change_request_decided_at_matches_status",
            )
        ]

    def __str__(self) -> str:
        return f"change to {self.product_id} ({self.status})"


# Object permissions on partners through direct foreign keys (django-guardian): an indexed
# join instead of the generic (content type, text pk) table, so scoping every admin page of
# a partner staff user stays cheap. See partners.permissions.


class PartnerUserObjectPermission(UserObjectPermissionBase):
    content_object = models.ForeignKey(Partner, on_delete=models.CASCADE)


class PartnerGroupObjectPermission(GroupObjectPermissionBase):
    content_object = models.ForeignKey(Partner, on_delete=models.CASCADE)
