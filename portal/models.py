"""The partner portal's own rows: invitations of partner staff and what staff did there."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models

from partners.models import Partner


class PartnerInvitation(models.Model):
    """An operator's invitation for one person to become partner staff of one partner.

    The link's token is shown once to the operator (the admin page after creating it) and
    stored only as its SHA-256: a database reader cannot use an open invitation. It works
    once, until ``expires_at``, unless revoked."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    partner = models.ForeignKey(Partner, on_delete=models.PROTECT, related_name="+")
    # The invitee, as the operator knows them (partner staff, not applicants); shown on
    # the invitation's own page only, never on the list.
    name = models.CharField(max_length=120)
    email = models.EmailField()
    # Manage (keys, webhooks, returns, acknowledgements) or only view the partner's rows.
    manage = models.BooleanField(default=True)
    token_hash = models.CharField(max_length=64, unique=True, editable=False)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        editable=False,
    )
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(editable=False)
    used_at = models.DateTimeField(null=True, blank=True, editable=False)
    # The account made with it (once used).
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        editable=False,
    )
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"Invitation to {self.partner.name} ({self.created_at:%Y-%m-%d})"


class PortalActionKind(models.TextChoices):
    RETURN_REQUESTED = "return_requested", "Return requested"
    KEY_CREATED = "key_created", "API key created"
    KEY_REVOKED = "key_revoked", "API key revoked"
    WEBHOOK_URL_SET = "webhook_url_set", "Webhook URL set"
    SECRET_ROTATED = "secret_rotated", "Webhook secret rotated"
    WEBHOOK_REPLAYED = "webhook_replayed", "Webhook message replayed"
    LEAD_RESENT = "lead_resent", "Failed lead post sent again"
    DELETION_ACKNOWLEDGED = "deletion_acknowledged", "Deletion acknowledged"


class PortalAction(models.Model):
    """Who did what in the portal, on which object: written in the change's transaction,
    never edited. ``target`` is an object id (no personal data)."""

    id = models.BigAutoField(primary_key=True)
    partner = models.ForeignKey(Partner, on_delete=models.PROTECT, related_name="+")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    kind = models.CharField(max_length=24, choices=PortalActionKind.choices)
    target = models.CharField(max_length=80)
    is_sandbox = models.BooleanField(default=False)
    at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-at", "-id"]
        indexes = [models.Index(fields=["partner", "at"])]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} {self.target}"
