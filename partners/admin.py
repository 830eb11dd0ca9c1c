from __future__ import annotations

import json
from datetime import UTC
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import Prefetch, QuerySet
from django.http import HttpRequest, HttpResponse
from django.utils.html import format_html, format_html_join
from guardian.admin import ReinforcedGuardedModelAdmin

from partners import holds, products, webhook_delivery
from partners.adminutils import PartnerScopedAdminMixin, ReadOnlyInline
from partners.keys import issue_api_key, revoke_api_key
from partners.models import (
    ApiKey,
    ChangeRequestStatus,
    HoldReason,
    KeyMode,
    Partner,
    Product,
    ProductChangeRequest,
    RoutingHold,
    TrafficSource,
    WebhookAttempt,
    WebhookEndpoint,
    WebhookMessage,
)
from partners.permissions import partner_ids_for_user

# Partner staff (partners.permissions) see only their partners' rows in every admin below;
# they edit contacts and act (keys, replays, rotations) only for partners they manage, and
# never change products (they propose changes through the API) nor decide change requests.
PARTNER_FIELDS = admin.RelatedOnlyFieldListFilter  # filter lists name only reachable partners


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

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        queryset = super().get_queryset(request)  # type: ignore[misc]
        own = holds.active_holds()
        own = own.filter(product__isnull=True) if queryset.model is Partner else own
        return queryset.prefetch_related(
            Prefetch("routing_holds", queryset=own, to_attr="holds_in_force")
        )

    def _may_pause(self, request: HttpRequest, obj: Any) -> bool:
        return partner_ids_for_user(request.user) is None and bool(
            self.has_change_permission(request, obj)  # type: ignore[attr-defined]
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
            holds.place_hold(
                partner_id=partner_id,
                product_id=product_id,
                reason=HoldReason.OPS_PAUSE,
                note=form.cleaned_data["ops_hold_note"],
                created_by=request.user,
            )
        else:
            holds.lift_hold(
                partner_id=partner_id,
                product_id=product_id,
                reason=HoldReason.OPS_PAUSE,
                lifted_by=request.user,
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


class ProductInline(admin.TabularInline):
    model = Product
    extra = 0
    fields = [
        "name",
        "is_active",
        "delivery_mode",
        "min_amount",
        "max_amount",
        "risk_tiers",
        "apr_min",
        "apr_max",
    ]
    show_change_link = True


class ApiKeyInline(ReadOnlyInline):
    model = ApiKey
    fields = readonly_fields = (
        "prefix",
        "mode",
        "name",
        "created_at",
        "last_used_at",
        "revoked_at",
    )


class WebhookInline(ReadOnlyInline):
    model = WebhookEndpoint
    fields = readonly_fields = (
        "url",
        "is_active",
        "created_at",
    )


@admin.register(Partner)
class PartnerAdmin(  # type: ignore[misc]  # django-guardian types change_form_template as str
    RoutingHoldAdminMixin, PartnerScopedAdminMixin, ReinforcedGuardedModelAdmin
):
    # Reinforced: managing a partner does not let its staff grant permissions on it.
    partner_field = "pk"
    partner_staff_can_change = True
    list_display = [
        "name",
        "status",
        "holds",
        "monthly_budget",
        "licence_number",
        "contact_email",
        "created_at",
    ]
    list_filter = ["status", ("monthly_budget", admin.EmptyFieldListFilter)]
    search_fields = ["name", "legal_name", "licence_number"]
    prepopulated_fields = {"slug": ["name"]}
    inlines = [ProductInline, ApiKeyInline, WebhookInline]
    actions = ["issue_live_key", "issue_sandbox_key"]
    # What only the operator decides: identity, licence and status (and holds: the ops
    # pause fields of OpsHoldForm, which partner staff never get).
    operator_fields = ["name", "slug", "legal_name", "licence_number", "status"]
    readonly_fields = ["holds_in_force_detail"]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        fields = list(super().get_readonly_fields(request, obj))
        if partner_ids_for_user(request.user) is not None:
            fields += [f for f in self.operator_fields if f not in fields]
        return fields

    # Object permission pages (django-guardian): a refusal is a 403, as everywhere else in
    # the admin, rather than guardian's redirect to the index.
    def _require(self, request: HttpRequest, *perms: str) -> None:
        if not self.has_change_permission(request) or not request.user.has_perms(perms):
            raise PermissionDenied

    def obj_perms_manage_view(self, request: HttpRequest, object_pk: Any) -> HttpResponse:
        self._require(
            request, "guardian.view_userobjectpermission", "guardian.view_groupobjectpermission"
        )
        return super().obj_perms_manage_view(request, object_pk)

    def obj_perms_manage_user_view(
        self, request: HttpRequest, object_pk: Any, user_id: Any
    ) -> HttpResponse:
        self._require(request, "guardian.change_userobjectpermission")
        return super().obj_perms_manage_user_view(request, object_pk, user_id)

    def obj_perms_manage_group_view(
        self, request: HttpRequest, object_pk: Any, group_id: Any
    ) -> HttpResponse:
        self._require(request, "guardian.change_groupobjectpermission")
        return super().obj_perms_manage_group_view(request, object_pk, group_id)

    def get_prepopulated_fields(self, request: HttpRequest, obj: Any = None) -> dict[str, Any]:
        if partner_ids_for_user(request.user) is not None:
            return {}  # slug is read-only for partner staff
        return dict(super().get_prepopulated_fields(request, obj))

    def _issue(self, request: HttpRequest, queryset: QuerySet[Partner], mode: str) -> None:
        for partner in self.manageable(request, queryset):
            issued = issue_api_key(partner=partner, mode=mode, name=f"admin:{request.user}")
            # Shown once: only the keyed hash is stored.
            self.message_user(
                request,
                f"{partner.name}: new {mode} key (copy it now, it is not shown again): "
                f"{issued.plaintext}",
                messages.WARNING,
            )

    @admin.action(description="Issue a live API key (shown once)", permissions=["change"])
    def issue_live_key(self, request: HttpRequest, queryset: QuerySet[Partner]) -> None:
        self._issue(request, queryset, KeyMode.LIVE)

    @admin.action(description="Issue a sandbox API key (shown once)", permissions=["change"])
    def issue_sandbox_key(self, request: HttpRequest, queryset: QuerySet[Partner]) -> None:
        self._issue(request, queryset, KeyMode.SANDBOX)


@admin.register(Product)
class ProductAdmin(RoutingHoldAdminMixin, PartnerScopedAdminMixin, admin.ModelAdmin):
    list_display = [
        "name",
        "partner",
        "is_active",
        "delivery_mode",
        "min_amount",
        "max_amount",
        "apr_min",
        "apr_max",
        "daily_cap",
        "monthly_budget",
        "exclusive",
        "max_shared_partners",
        "holds",
    ]
    list_filter = [
        "is_active",
        "delivery_mode",
        "exclusive",
        ("monthly_budget", admin.EmptyFieldListFilter),
        ("max_shared_partners", admin.EmptyFieldListFilter),
        ("partner", PARTNER_FIELDS),
    ]
    search_fields = ["name", "partner__name"]
    readonly_fields = ["holds_in_force_detail"]

    def get_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        # The product's own fields first, then its terms: Django would list the fields of
        # the term mixins (partners.product_terms) first, as they are created first.
        fields = list(super().get_fields(request, obj))
        own = [name for name in ("partner", "name", "is_active") if name in fields]
        return own + [name for name in fields if name not in own]


@admin.register(TrafficSource)
class TrafficSourceAdmin(admin.ModelAdmin):
    list_display = ["name", "is_operator", "created_at"]
    actions = ["issue_key"]

    @admin.action(description="Issue a live source API key (shown once)", permissions=["change"])
    def issue_key(self, request: HttpRequest, queryset: QuerySet[TrafficSource]) -> None:
        for source in queryset:
            issued = issue_api_key(source=source, name=f"admin:{request.user}")
            self.message_user(
                request,
                f"{source.name}: new key (shown once): {issued.plaintext}",
                messages.WARNING,
            )


@admin.register(ApiKey)
class ApiKeyAdmin(PartnerScopedAdminMixin, admin.ModelAdmin):
    partner_staff_can_change = True  # revoke their own keys
    list_display = [
        "prefix",
        "kind",
        "mode",
        "partner",
        "source",
        "created_at",
        "last_used_at",
        "revoked_at",
        "rate_limit_per_minute",
    ]
    list_filter = ["kind", "mode", "revoked_at"]
    readonly_fields = [
        "kind",
        "mode",
        "partner",
        "source",
        "prefix",
        "created_at",
        "last_used_at",
        "revoked_at",
    ]
    exclude = ["key_hash"]
    actions = ["revoke"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # keys are issued from the partner or source page, shown once

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        fields = list(super().get_readonly_fields(request, obj))
        if partner_ids_for_user(request.user) is not None:
            fields.append("rate_limit_per_minute")  # the operator sets limits
        return fields

    @admin.action(description="Revoke selected keys", permissions=["change"])
    def revoke(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> None:
        for api_key in self.manageable(request, queryset):
            revoke_api_key(api_key=api_key)


class WebhookAttemptInline(ReadOnlyInline):
    model = WebhookAttempt
    fields = readonly_fields = (
        "attempted_at",
        "http_status",
        "latency_ms",
        "error",
    )
    show_change_link = False


@admin.register(WebhookMessage)
class WebhookMessageAdmin(PartnerScopedAdminMixin, admin.ModelAdmin):
    partner_staff_can_change = True  # replay their own messages
    list_display = [
        "id",
        "partner",
        "event_type",
        "status",
        "attempts",
        "next_attempt_at",
        "delivered_at",
        "created_at",
    ]
    list_filter = ["status", "event_type", "is_sandbox", ("partner", PARTNER_FIELDS)]
    search_fields = ["=id", "dedupe_key"]
    readonly_fields = [
        "id",
        "partner",
        "endpoint",
        "event_type",
        "dedupe_key",
        "payload",
        "is_sandbox",
        "status",
        "attempts",
        "next_attempt_at",
        "delivered_at",
        "created_at",
    ]
    inlines = [WebhookAttemptInline]
    actions = ["replay"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    @admin.action(
        description="Replay selected messages (send again from the start)", permissions=["change"]
    )
    def replay(self, request: HttpRequest, queryset: QuerySet[WebhookMessage]) -> None:
        ids = list(self.manageable(request, queryset).values_list("id", flat=True))
        for message_id in ids:
            webhook_delivery.replay(message_id=message_id)
        self.message_user(request, f"{len(ids)} message(s) queued again.")


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(PartnerScopedAdminMixin, admin.ModelAdmin):
    partner_staff_can_change = True  # rotate secrets, re-enable after fixing the receiver
    list_display = ["partner", "url", "is_active", "disabled_reason", "created_at"]
    list_filter = ["is_active"]
    fields = [
        "partner",
        "url",
        "event_types",
        "is_active",
        "disabled_reason",
        "previous_secret_expires_at",
        "created_at",
    ]
    readonly_fields = ["previous_secret_expires_at", "created_at", "disabled_reason"]
    actions = ["rotate"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # created with a secret shown once (partners.webhook_signing.create_endpoint)

    @admin.action(
        description="Rotate the signing secret (old one signs 24 h more)", permissions=["change"]
    )
    def rotate(self, request: HttpRequest, queryset: QuerySet[WebhookEndpoint]) -> None:
        for endpoint in self.manageable(request, queryset):
            secret = webhook_delivery.rotate_secret(endpoint_id=endpoint.pk)
            self.message_user(
                request,
                f"{endpoint}: new secret (copy it now, it is not shown again): {secret}",
                messages.WARNING,
            )


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
