"""Routing holds in the admin: the form field an operator pauses and resumes a product with
(an ops hold, apart from billing's credit-limit and budget holds) and the mixin that shows
a partner's or product's holds and places or lifts the ops hold.
"""

from __future__ import annotations

from datetime import UTC
from typing import Any

from django import forms
from django.contrib import admin
from django.db.models import Prefetch, QuerySet
from django.http import HttpRequest
from django.utils.html import format_html_join

from partners import admin_audit, holds
from partners.models import HoldReason, Partner, Product, RoutingHold
from partners.permissions import partner_ids_for_user


class OpsHoldForm(forms.ModelForm):
    """Operators pause and resume routing here: an ops hold (``HoldReason.OPS_PAUSE``),
    beside and apart from billing's credit-limit and budget holds, which only billing
    places and lifts."""

    ops_hold = forms.BooleanField(
        required=False,
        label="Paused by ops",
        help_text="Hold routing (live status kept). Unticking lifts only this ops hold: "
        "a credit-limit or budget hold stays until billing lifts it.",
    )
    ops_hold_note = forms.CharField(
        required=False,
        max_length=200,
        label="Why paused",
        help_text="Kept with the hold (staff only, never shown to the partner).",
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        held = self.instance.pk and _ops_hold(self.instance)
        if held:
            self.fields["ops_hold"].initial = True
            self.fields["ops_hold_note"].initial = held.note
            self.fields["ops_hold_note"].disabled = True  # resume, then pause with a new note

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if data.get("ops_hold") and not data.get("ops_hold_note"):
            self.add_error("ops_hold_note", "Say why routing is paused.")
        return data


def _hold_target(obj: Partner | Product) -> tuple[Any, Any]:
    """(partner id, product id or None) of a partner or product row."""
    return (obj.partner_id, obj.pk) if isinstance(obj, Product) else (obj.pk, None)


def _ops_hold(obj: Partner | Product) -> RoutingHold | None:
    partner_id, product_id = _hold_target(obj)
    scoped = holds.active_holds().filter(partner_id=partner_id, reason=HoldReason.OPS_PAUSE)
    if product_id:
        return scoped.filter(product_id=product_id).first()
    return scoped.filter(product__isnull=True).first()


class RoutingHoldAdminMixin:
    """The holds in force on a partner or product (list column and change page), and the
    ops pause for operators who may change the row."""

    holds_prefetch = "routing_holds"
    # A product is paused and resumed by the box on its form; a partner only through its
    # pause and resume pages (``PartnerOperationsMixin``), which ask for a reason and record
    # who and when: its form shows the holds in force, read-only, and no box.
    ops_hold_in_form = True

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        queryset = super().get_queryset(request)  # type: ignore[misc]
        own = holds.active_holds()
        own = own.filter(product__isnull=True) if queryset.model is Partner else own
        return queryset.prefetch_related(
            Prefetch("routing_holds", queryset=own, to_attr="holds_in_force")
        )

    def _may_pause(self, request: HttpRequest, obj: Any) -> bool:
        return (
            self.ops_hold_in_form
            and partner_ids_for_user(request.user) is None
            and bool(
                self.has_change_permission(request, obj)  # type: ignore[attr-defined]
            )
        )

    def get_form(
        self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any
    ) -> type[forms.ModelForm[Any]]:
        if self._may_pause(request, obj):
            kwargs["form"] = OpsHoldForm
        form: type[forms.ModelForm[Any]] = super().get_form(  # type: ignore[misc]
            request, obj, change, **kwargs
        )
        return form

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        super().save_model(request, obj, form, change)  # type: ignore[misc]
        if not isinstance(form, OpsHoldForm):
            return
        partner_id, product_id = _hold_target(obj)
        if form.cleaned_data["ops_hold"]:
            note = form.cleaned_data["ops_hold_note"]
            if holds.place_hold(
                partner_id=partner_id,
                product_id=product_id,
                reason=HoldReason.OPS_PAUSE,
                note=note,
                created_by=request.user,
            ):
                admin_audit.record(
                    request,
                    obj,
                    "Paused routing (ops hold)",
                    changes={"routing": ("running", "paused by ops")},
                    reason=note,
                )
        elif holds.lift_hold(
            partner_id=partner_id,
            product_id=product_id,
            reason=HoldReason.OPS_PAUSE,
            lifted_by=request.user,
        ):
            admin_audit.record(
                request,
                obj,
                "Resumed routing (ops hold lifted)",
                changes={"routing": ("paused by ops", "running")},
            )

    @admin.display(description="Holds")
    def holds(self, obj: Partner | Product) -> str:
        held = getattr(obj, "holds_in_force", None)
        if held is None:  # not from get_queryset (e.g. a freshly added row)
            return ""
        return ", ".join(hold.get_reason_display() for hold in held)

    @admin.display(description="Routing holds in force")
    def holds_in_force_detail(self, obj: Partner | Product) -> str:
        if obj is None or obj.pk is None:
            return "-"
        partner_id, product_id = _hold_target(obj)
        rows = holds.active_holds().filter(partner_id=partner_id).select_related("product")
        if product_id:
            rows = rows.filter(product_id=product_id)
        if not rows:
            return "None"
        return format_html_join(
            "",
            "<div>{} ({}) since {} UTC</div>",
            (
                (
                    row.get_reason_display(),
                    row.product.name if row.product else "all products",
                    f"{row.created_at.astimezone(UTC):%Y-%m-%d %H:%M}",
                )
                for row in rows
            ),
        )
