"""Admin of the charge ledger, read-only: charges, fees waiting for an exchange rate
("needs rate"), and the review of disputed returns.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from billing import charging
from billing.models import Charge, PendingFee, ReturnReview, ReviewStatus
from partners.admin_fields import short_time
from partners.adminutils import PartnerScopedAdminMixin, ReadOnlyAdmin


@admin.register(Charge)
class ChargeAdmin(PartnerScopedAdminMixin, ReadOnlyAdmin):
    list_display = ["occurred", "partner", "kind", "entry_type", "money", "period"]
    list_filter = ["kind", "entry_type", "partner", "currency"]
    search_fields = ["=lead__id", "=id"]
    date_hierarchy = "occurred_at"
    list_select_related = ["partner", "credit_note"]
    ordering = ["-occurred_at"]

    @admin.display(description="Occurred", ordering="occurred_at")
    def occurred(self, obj: Charge) -> str:
        return short_time(obj.occurred_at)

    @admin.display(description="Amount", ordering="amount")
    def money(self, obj: Charge) -> str:
        return f"{obj.currency} {obj.amount}"


@admin.register(ReturnReview)
class ReturnReviewAdmin(PartnerScopedAdminMixin, ReadOnlyAdmin):
    list_display = [
        "created_at",
        "partner",
        "lead",
        "reason_code",
        "return_rate",
        "why",
        "status",
        "decided_by",
    ]
    list_filter = ["status", "partner"]
    list_select_related = ["partner", "decided_by"]
    ordering = ["-created_at"]
    date_hierarchy = "created_at"
    actions = ["approve", "reject"]

    def _decide(
        self, request: HttpRequest, queryset: QuerySet[ReturnReview], approve: bool
    ) -> None:
        credits = 0
        for review in queryset.filter(status=ReviewStatus.PENDING):
            credits += len(
                charging.decide_return(review_id=review.pk, approve=approve, user=request.user)
            )
        self.message_user(request, f"Decided; {credits} credit(s) booked.", messages.SUCCESS)

    def has_decide_permission(self, request: HttpRequest) -> bool:
        return bool(request.user.has_perm("billing.change_returnreview"))

    @admin.action(description="Approve: credit the returned leads", permissions=["decide"])
    def approve(self, request: HttpRequest, queryset: QuerySet[ReturnReview]) -> None:
        self._decide(request, queryset, True)

    @admin.action(description="Reject: no credit", permissions=["decide"])
    def reject(self, request: HttpRequest, queryset: QuerySet[ReturnReview]) -> None:
        self._decide(request, queryset, False)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(PendingFee)
class PendingFeeAdmin(PartnerScopedAdminMixin, ReadOnlyAdmin):
    """Fees that are due but wait for an exchange rate ("needs rate"): the partner's
    invoices covering them cannot be issued until finance enters the rate."""

    list_display = [
        "partner",
        "kind",
        "from_currency",
        "to_currency",
        "occurred_at",
        "created_at",
        "resolved_at",
    ]
    list_filter = [
        "kind",
        "from_currency",
        "to_currency",
        ("resolved_at", admin.EmptyFieldListFilter),
    ]
    date_hierarchy = "occurred_at"
    list_select_related = ["partner"]
    ordering = ["-created_at"]
