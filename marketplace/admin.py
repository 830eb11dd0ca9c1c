from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from marketplace import dispatch, lab_admin  # noqa: F401  (lab_admin: the strategy lab's pages)
from marketplace.decision_admin import DecisionInline
from marketplace.models import (
    Auction,
    DeliveryAttempt,
    Lead,
    LeadEvent,
    PingAttempt,
    Referral,
)
from partners.adminutils import PartnerScopedAdminMixin, ReadOnlyAdmin, ReadOnlyInline


class LeadInline(ReadOnlyInline):
    model = Lead
    fields = readonly_fields = (
        "partner",
        "product",
        "status",
        "delivery_mode",
        "bid_amount",
        "bid_currency",
        "is_sandbox",
        "delivered_at",
    )


class AttemptInline(ReadOnlyInline):
    model = DeliveryAttempt
    fields = readonly_fields = (
        "kind",
        "started_at",
        "outcome",
        "http_status",
        "latency_ms",
        "reason",
    )
    show_change_link = False


class EventInline(ReadOnlyInline):
    model = LeadEvent
    fields = readonly_fields = (
        "type",
        "external_id",
        "occurred_at",
        "amount",
        "apr",
        "principal",
        "currency",
        "reason",
        "reverses",
    )
    fk_name = "lead"


class OverdueFilter(admin.SimpleListFilter):
    """Referrals still being distributed after their deadline (``settle_by``): work the
    outbox sweeper is driving again, or that needs a person to look at it."""

    title = "distribution"
    parameter_name = "distribution"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("overdue", "Overdue (not terminal by its deadline)")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if self.value() == "overdue":
            return queryset.filter(pk__in=dispatch.overdue().values("pk"))
        return queryset


@admin.register(Referral)
class ReferralAdmin(ReadOnlyAdmin):
    # Anonymised attributes only; the applicant's data stays in the vault.
    # Fits 1366 px beside the filters; the rest is on the referral's page.
    list_display = ["id", "status", "risk_tier", "amount", "region", "channel", "created_at"]
    list_filter = [OverdueFilter, "status", "risk_tier", "channel", "is_sandbox", "source"]
    ordering = ["-created_at"]  # newest first (ids are random UUIDs)
    search_fields = ["=id", "source_reference"]
    date_hierarchy = "created_at"
    exclude = ["subject"]
    inlines = [DecisionInline, LeadInline]


@admin.register(Lead)
class LeadAdmin(PartnerScopedAdminMixin, ReadOnlyAdmin):
    list_display = ["id", "partner", "status", "bid_amount", "created_at"]
    list_filter = ["status", "delivery_mode", "is_sandbox", "partner"]
    ordering = ["-created_at"]
    search_fields = ["=id", "=referral__id", "partner_reference"]
    date_hierarchy = "created_at"
    exclude = ["subject"]
    list_select_related = ["partner", "product"]
    raw_id_fields = ["auction"]
    inlines = [AttemptInline, EventInline]


@admin.register(LeadEvent)
class LeadEventAdmin(PartnerScopedAdminMixin, ReadOnlyAdmin):
    list_display = ["external_id", "type", "lead", "received_at"]
    list_filter = ["type", "partner"]
    ordering = ["-received_at"]
    date_hierarchy = "received_at"
    search_fields = ["=external_id", "=lead__id"]
    list_select_related = ["partner"]


@admin.register(DeliveryAttempt)
class DeliveryAttemptAdmin(PartnerScopedAdminMixin, ReadOnlyAdmin):
    partner_field = "lead__partner"
    list_display = ["lead", "outcome", "latency_ms", "started_at"]
    list_filter = ["outcome", "kind"]
    ordering = ["-started_at"]


class PingInline(ReadOnlyInline):
    model = PingAttempt
    fields = readonly_fields = (
        "partner",
        "product",
        "outcome",
        "reason",
        "bid",
        "bid_currency",
        "rank",
        "award",
        "lead",
        "http_status",
        "latency_ms",
        "started_at",
    )
    show_change_link = False


@admin.register(Auction)
class AuctionAdmin(ReadOnlyAdmin):
    # Anonymised: the referral's id, never the applicant; bids are the partners' prices.
    list_display = ["id", "mode", "status", "wall_ms", "created_at"]
    list_filter = ["status", "mode"]
    ordering = ["-created_at"]
    search_fields = ["=id", "=referral__id"]
    date_hierarchy = "created_at"
    raw_id_fields = ["referral"]
    inlines = [PingInline]
