"""The partner registry and partners' suppression lists, as models.

Registered with the app by ``PartnersConfig.import_models`` (models outside
``partners.models``).

- ``PartnerLicence``: the lending licence a partner holds. The 2025 rules on lending
  through internet platforms: banks work only with listed platforms. Routing never sends a
  lead to a partner without a licence in force on the referral's (UTC) date
  (``marketplace.eligibility``: ``licence_missing``, ``licence_expired``), read from every
  licence cached per catalogue version (``every_licence_period``; a licence recorded or
  renewed moves the version), so it counts from the next referral on.
- ``SuppressionKey`` / ``SuppressionEntry``: a partner's existing customers, as keyed hashes
  of their phone or ID numbers under a key shared with the platform (``partners.suppression``
  documents the hashing). Per partner and key mode: a sandbox key manages the sandbox list.
"""

from __future__ import annotations

import uuid
from datetime import date

from django.db import models
from django.db.models import F, Q

from partners.models import Partner


class PartnerLicence(models.Model):
    partner = models.OneToOneField(Partner, on_delete=models.CASCADE, related_name="licence")
    number = models.CharField(max_length=80)
    # The regulator that issued it, e.g. "NFRA Guangdong Office".
    issuer = models.CharField(max_length=120)
    valid_from = models.DateField()
    # The last day the licence is in force (inclusive, UTC dates).
    expires_on = models.DateField()
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["expires_on"]
        constraints = [
            models.CheckConstraint(
                condition=Q(expires_on__gte=F("valid_from")), name="licence_valid_range"
            )
        ]

    def __str__(self) -> str:
        return f"{self.number} ({self.issuer}), until {self.expires_on:%Y-%m-%d}"


class SuppressionKey(models.Model):
    """The key a partner hashes its customers' numbers under, shared with the platform."""

    partner = models.ForeignKey(Partner, on_delete=models.CASCADE, related_name="+")
    is_sandbox = models.BooleanField(default=False)
    # Sealed with partners.secretbox: the platform must read it back to hash applicants.
    key_encrypted = models.BinaryField()
    created_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["partner", "is_sandbox"], name="one_suppression_key_per_partner_mode"
            )
        ]


class SuppressionEntry(models.Model):
    """One hashed phone or ID number of a partner's existing customer: never plaintext."""

    id = models.BigAutoField(primary_key=True)
    partner = models.ForeignKey(Partner, on_delete=models.CASCADE, related_name="+")
    is_sandbox = models.BooleanField(default=False)
    digest = models.CharField(max_length=64)  # hex HMAC-SHA256 (partners.suppression)
    created_at = models.DateTimeField()

    class Meta:
        constraints = [
            # Also the index of the one lookup routing makes: (partner, mode, digest).
            models.UniqueConstraint(
                fields=["partner", "is_sandbox", "digest"], name="suppression_entry_once"
            )
        ]


def every_licence_period() -> dict[uuid.UUID, tuple[date, date]]:
    """(valid from, expires on) of every listed partner's licence (one query; routing
    caches it per catalogue version, ``partners.catalogue_cache``)."""
    rows = PartnerLicence.objects.values_list("partner_id", "valid_from", "expires_on")
    return {partner_id: (start, end) for partner_id, start, end in rows}


def partners_with_suppression_keys(*, is_sandbox: bool) -> frozenset[uuid.UUID]:
    """The partners keeping a suppression list in this mode (they have a shared key)."""
    keys = SuppressionKey.objects.filter(is_sandbox=is_sandbox)
    return frozenset(keys.values_list("partner_id", flat=True))
