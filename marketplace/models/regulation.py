"""Regulatory rule sets: dated, append-only versions of the rules every referral is routed
under (``marketplace.regulation`` reads the one in force at a referral's time)."""

from __future__ import annotations

from decimal import Decimal

from django.conf import settings
from django.db import models
from django.db.models import Q


class RuleSet(models.Model):
    """One version of the regulatory rules. Append-only: a change is a new version with its
    own ``effective_from``; the admin never edits or deletes one (the decisions made under it
    must stay explainable)."""

    id = models.BigAutoField(primary_key=True)
    # In force from this moment until the next version's effective_from.
    effective_from = models.DateTimeField(db_index=True)
    # Cap on a product's worst-case all-in annual cost (APR plus every fee), a fraction:
    # 0.2400 = 24%, the line regulators and courts watch.
    all_in_cost_cap = models.DecimalField(max_digits=5, decimal_places=4, default=Decimal("0.2400"))
    min_age = models.PositiveSmallIntegerField(default=18)
    max_age = models.PositiveSmallIntegerField(null=True, blank=True)  # NULL: no maximum
    # ISO 3166-2 codes no applicant is routed from, e.g. ["CN-XZ"].
    excluded_regions = models.JSONField(default=list, blank=True)
    note = models.CharField(max_length=500, blank=True)  # why this version
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-effective_from", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(all_in_cost_cap__gte=0) & Q(all_in_cost_cap__lte=1),
                name="rule_set_cap_is_a_rate",
            ),
            # Minors are never routed (DOMAIN: no referral of an applicant under 18).
            models.CheckConstraint(condition=Q(min_age__gte=18), name="rule_set_adults_only"),
            models.CheckConstraint(
                condition=Q(max_age__isnull=True) | Q(max_age__gte=models.F("min_age")),
                name="rule_set_age_range",
            ),
        ]

    def __str__(self) -> str:
        return f"Rule set {self.pk} from {self.effective_from:%Y-%m-%d %H:%M}"
