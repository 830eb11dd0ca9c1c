"""Admin of product change requests: the proposed terms beside the product's current
ones, approved (applied) or rejected by an operator, never by partner staff.
"""

from __future__ import annotations

import json
from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html, format_html_join

from partners import products
from partners.admin.accounts import PARTNER_FIELDS
from partners.adminutils import PartnerScopedAdminMixin
from partners.models import ChangeRequestStatus, ProductChangeRequest


@admin.register(ProductChangeRequest)
class ProductChangeRequestAdmin(PartnerScopedAdminMixin, admin.ModelAdmin):
    """Partners' proposed product changes; approving applies one in a transaction."""

    list_display = ["id", "partner", "product", "status", "requested_via", "created_at"]
    list_filter = ["status", ("partner", PARTNER_FIELDS)]
    search_fields = ["=id", "product__name", "partner__name"]
    fields = [
        "partner",
        "product",
        "status",
        "proposed_changes",
        "note",
        "requested_via",
        "decision_note",
        "decided_by",
        "decided_at",
        "created_at",
    ]
    readonly_fields = [
        "partner",
        "product",
        "status",
        "proposed_changes",
        "note",
        "requested_via",
        "decided_by",
        "decided_at",
        "created_at",
    ]
    actions = ["approve", "reject"]

    def has_add_permission(self, request: HttpRequest, *args: Any) -> bool:
        return False  # partners propose through the API

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        fields = list(super().get_readonly_fields(request, obj))
        if obj is not None and obj.status != ChangeRequestStatus.PENDING:
            fields.append("decision_note")  # a decision, once made, is a fact
        return fields

    @admin.display(description="Key")
    def requested_via(self, obj: ProductChangeRequest) -> str:
        key = obj.requested_by_key
        return f"{key.mode} key {key.prefix}" if key else "-"

    @admin.display(description="Changes (current → proposed)")
    def proposed_changes(self, obj: ProductChangeRequest) -> str:
        current = products.current_values(obj.product)
        rows = (
            (name, json.dumps(current.get(name), default=str), json.dumps(value, default=str))
            for name, value in obj.changes.items()
        )
        return format_html(
            "<table>{}</table>",
            format_html_join("", "<tr><th>{}</th><td>{}</td><td>→ {}</td></tr>", rows),
        )

    @admin.action(description="Approve and apply to the product", permissions=["change"])
    def approve(self, request: HttpRequest, queryset: QuerySet[ProductChangeRequest]) -> None:
        applied = 0
        for change_request in queryset.filter(status=ChangeRequestStatus.PENDING):
            try:
                products.approve_change(
                    change_request_id=change_request.pk,
                    decided_by=request.user,
                    note=change_request.decision_note,
                )
            except products.ChangeRequestError as exc:
                problems = "; ".join(f"{k}: {' '.join(v)}" for k, v in exc.errors.items())
                self.message_user(
                    request, f"{change_request.pk}: {exc} ({problems})", messages.ERROR
                )
            else:
                applied += 1
        self.message_user(request, f"{applied} change(s) applied.")

    @admin.action(
        description="Reject (the decision note is shown to the partner)", permissions=["change"]
    )
    def reject(self, request: HttpRequest, queryset: QuerySet[ProductChangeRequest]) -> None:
        rejected = 0
        for change_request in queryset.filter(status=ChangeRequestStatus.PENDING):
            products.reject_change(
                change_request_id=change_request.pk,
                decided_by=request.user,
                note=change_request.decision_note,
            )
            rejected += 1
        self.message_user(request, f"{rejected} change(s) rejected.")
