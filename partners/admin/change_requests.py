"""Admin of product change requests: the proposed terms beside the product's current
ones, approved (applied) or rejected by an operator from the request's own page with a
note the partner is shown, never by partner staff. Each decision is in the history of the
request and, when applied, of the product (old and new values).
"""

from __future__ import annotations

import json
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join

from partners import admin_audit, products
from partners.admin.accounts import PARTNER_FIELDS
from partners.adminutils import PartnerScopedAdminMixin
from partners.models import ChangeRequestStatus, ProductChangeRequest
from partners.permissions import partner_ids_for_user


class DecisionForm(forms.Form):
    APPROVE, REJECT = "approve", "reject"
    decision = forms.ChoiceField(
        choices=[(APPROVE, "Approve and apply to the product"), (REJECT, "Reject")],
        widget=forms.RadioSelect,
    )
    note = forms.CharField(
        required=False,
        max_length=500,
        widget=forms.Textarea(attrs={"rows": 3, "cols": 60}),
        label="Note to the partner",
        help_text="Shown to the partner with the decision (API and portal). Required to reject.",
    )

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if data.get("decision") == self.REJECT and not (data.get("note") or "").strip():
            self.add_error("note", "Tell the partner why the change is rejected.")
        return data


def _decide(
    request: HttpRequest, change_request: ProductChangeRequest, *, approve: bool, note: str
) -> ProductChangeRequest:
    """Approve (apply) or reject one request and write its history; raises
    products.ChangeRequestError when it no longer fits the product."""
    product = change_request.product
    before = products.current_values(product)
    if approve:
        decided = products.approve_change(
            change_request_id=change_request.pk, decided_by=request.user, note=note
        )
    else:
        decided = products.reject_change(
            change_request_id=change_request.pk, decided_by=request.user, note=note
        )
    if decided.status == ChangeRequestStatus.PENDING or decided.decided_by_id != request.user.pk:
        return decided  # decided before (by someone else): nothing new to record
    admin_audit.record(
        request,
        decided,
        f"Decided: {decided.get_status_display()}",
        changes={"status": (ChangeRequestStatus.PENDING.label, decided.get_status_display())},
        reason=note,
    )
    if decided.status == ChangeRequestStatus.APPROVED:
        product.refresh_from_db()
        after = products.current_values(product)
        admin_audit.record(
            request,
            product,
            f"Applied change request {decided.pk}",
            changes={name: (before.get(name), after.get(name)) for name in decided.changes},
            reason=note,
        )
    return decided


@admin.register(ProductChangeRequest)
class ProductChangeRequestAdmin(PartnerScopedAdminMixin, admin.ModelAdmin):
    """Partners' proposed product changes; approving applies one in a transaction."""

    list_display = ["created_at", "partner", "product_name", "status", "decided_at"]
    list_filter = ["status", ("partner", PARTNER_FIELDS)]
    list_select_related = ["partner", "product", "requested_by_key"]
    search_fields = ["=id", "product__name", "partner__name"]
    ordering = ["-created_at"]
    date_hierarchy = "created_at"
    fields = [
        "decide",
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
        "decide",
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

    def get_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        fields = list(super().get_fields(request, obj))
        if not self._may_decide(request, obj):
            fields.remove("decide")
        return fields

    def _may_decide(self, request: HttpRequest, obj: Any = None) -> bool:
        return partner_ids_for_user(request.user) is None and self.has_change_permission(
            request, obj
        )

    @admin.display(description="Decision")
    def decide(self, obj: ProductChangeRequest) -> str:
        if obj.status != ChangeRequestStatus.PENDING:
            return (
                f"{obj.get_status_display()} by {obj.decided_by} on {obj.decided_at:%Y-%m-%d %H:%M}"
            )
        url = reverse("admin:partners_productchangerequest_decide", args=[obj.pk])
        return format_html('<a class="ops-link" href="{}">Approve or reject…</a>', url)

    @admin.display(description="Product", ordering="product__name")
    def product_name(self, obj: ProductChangeRequest) -> str:
        return obj.product.name

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

    def get_urls(self) -> list[Any]:
        return [
            path(
                "<uuid:pk>/decide/",
                self.admin_site.admin_view(self.decide_view),
                name="partners_productchangerequest_decide",
            ),
            *super().get_urls(),
        ]

    def decide_view(self, request: HttpRequest, pk: Any) -> HttpResponse:
        change_request: ProductChangeRequest = get_object_or_404(
            self.get_queryset(request).select_related("product", "partner"), pk=pk
        )
        if not self._may_decide(request, change_request):
            raise PermissionDenied
        if change_request.status != ChangeRequestStatus.PENDING:
            self.message_user(request, "This request was decided already.", messages.WARNING)
            return redirect("admin:partners_productchangerequest_change", change_request.pk)
        form = DecisionForm(request.POST if request.method == "POST" else None)
        if request.method == "POST" and form.is_valid():
            approve = form.cleaned_data["decision"] == DecisionForm.APPROVE
            try:
                decided = _decide(
                    request, change_request, approve=approve, note=form.cleaned_data["note"]
                )
            except products.ChangeRequestError as exc:
                problems = "; ".join(f"{k}: {' '.join(v)}" for k, v in exc.errors.items())
                form.add_error(None, f"{exc} ({problems})")
            else:
                self.message_user(
                    request,
                    f"Change request for {decided.product} {decided.get_status_display().lower()}"
                    + (
                        " and applied to the product."
                        if approve
                        else "; the partner sees your note."
                    ),
                    messages.SUCCESS,
                )
                return redirect("admin:partners_productchangerequest_change", decided.pk)
        current = products.current_values(change_request.product)
        return TemplateResponse(
            request,
            "admin/ops/form.html",
            {
                **self.admin_site.each_context(request),
                "opts": self.model._meta,
                "original": change_request,
                "title": f"Decide the change to {change_request.product}",
                "intro": change_request.note or "",
                "row_headings": ["Term", "Current", "Proposed"],
                "rows": [
                    (
                        name,
                        json.dumps(current.get(name), default=str),
                        json.dumps(value, default=str),
                    )
                    for name, value in change_request.changes.items()
                ],
                "form": form,
                "submit_label": "Save decision",
            },
        )

    def _bulk(
        self, request: HttpRequest, queryset: QuerySet[ProductChangeRequest], approve: bool
    ) -> None:
        done = 0
        for change_request in queryset.filter(status=ChangeRequestStatus.PENDING):
            try:
                _decide(request, change_request, approve=approve, note=change_request.decision_note)
            except products.ChangeRequestError as exc:
                problems = "; ".join(f"{k}: {' '.join(v)}" for k, v in exc.errors.items())
                self.message_user(
                    request, f"{change_request.pk}: {exc} ({problems})", messages.ERROR
                )
            else:
                done += 1
        verb = "applied" if approve else "rejected"
        self.message_user(request, f"{done} change(s) {verb}.")

    @admin.action(description="Approve and apply to the product", permissions=["change"])
    def approve(self, request: HttpRequest, queryset: QuerySet[ProductChangeRequest]) -> None:
        self._bulk(request, queryset, True)

    @admin.action(
        description="Reject (the decision note is shown to the partner)", permissions=["change"]
    )
    def reject(self, request: HttpRequest, queryset: QuerySet[ProductChangeRequest]) -> None:
        self._bulk(request, queryset, False)
