"""Admin of partners and what belongs to them: products, traffic sources and API keys
(issued from a partner or a source and shown once, revoked from the key list).
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from guardian.admin import ReinforcedGuardedModelAdmin

from partners import admin_audit
from partners.admin.holds import RoutingHoldAdminMixin
from partners.admin.operations import PartnerOperationsMixin
from partners.admin_audit import ValueChangeMessageMixin
from partners.admin_fields import ChoiceSetAdminMixin, short_time
from partners.adminutils import PartnerScopedAdminMixin, ReadOnlyInline
from partners.keys import issue_api_key, revoke_api_key
from partners.models import ApiKey, KeyMode, Partner, Product, TrafficSource, WebhookEndpoint
from partners.permissions import partner_ids_for_user

PARTNER_FIELDS = admin.RelatedOnlyFieldListFilter  # filter lists name only reachable partners


@admin.display(description="Credit box")
def credit_box(obj: Product) -> str:
    if obj._state.adding:  # the inline's blank form (a new row has its UUID already)
        return "-"
    tiers = ", ".join(obj.risk_tiers or []) or "no tier"
    return (
        f"{obj.min_amount:,.0f}-{obj.max_amount:,.0f}, {obj.min_term_months}-"
        f"{obj.max_term_months} months, APR {obj.apr_min:.2%}-{obj.apr_max:.2%}, {tiers}"
    )


class ProductInline(admin.TabularInline):
    model = Product
    extra = 0
    # The credit box as one line of text: its inputs side by side ran off a 1366 px screen;
    # the product's own page edits them.
    # A callable, not a method name: an inline looks method names up on the parent admin.
    fields = ["name", "is_active", "delivery_mode", credit_box]  # type: ignore[list-item]
    readonly_fields = [credit_box]  # type: ignore[list-item]
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
    PartnerOperationsMixin,
    ValueChangeMessageMixin,
    RoutingHoldAdminMixin,
    PartnerScopedAdminMixin,
    ReinforcedGuardedModelAdmin,
):
    # Reinforced: managing a partner does not let its staff grant permissions on it.
    partner_field = "pk"
    partner_staff_can_change = True
    # No contact names or e-mails on the list (personal data); they are on the row's page.
    list_display = ["name", "status", "holds", "monthly_budget", "licence_number", "created_at"]
    list_filter = ["status", ("monthly_budget", admin.EmptyFieldListFilter), "created_at"]
    search_fields = ["name", "legal_name", "licence_number"]
    ordering = ["-created_at"]
    date_hierarchy = "created_at"
    prepopulated_fields = {"slug": ["name"]}
    inlines = [ProductInline, ApiKeyInline, WebhookInline]
    actions = ["issue_live_key", "issue_sandbox_key"]
    # Pausing goes through the pause and resume pages (a reason, who and when), never a
    # box on this form: the holds in force are shown read-only.
    ops_hold_in_form = False
    # What only the operator decides: identity, licence and status.
    operator_fields = ["name", "slug", "legal_name", "licence_number", "status"]
    readonly_fields = ["holds_in_force_detail", "operations"]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        fields = list(super().get_readonly_fields(request, obj))
        if partner_ids_for_user(request.user) is not None:
            fields += [f for f in self.operator_fields if f not in fields]
        return fields

    def get_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        fields = list(super().get_fields(request, obj))
        # Pause, resume and staff access are for operators who may change the partner.
        if obj is None or partner_ids_for_user(request.user) is not None:
            return [f for f in fields if f != "operations"]
        if not self.has_change_permission(request, obj):
            return [f for f in fields if f != "operations"]
        return ["operations", *[f for f in fields if f != "operations"]]

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
class ProductAdmin(
    ChoiceSetAdminMixin,
    ValueChangeMessageMixin,
    RoutingHoldAdminMixin,
    PartnerScopedAdminMixin,
    admin.ModelAdmin,
):
    list_display = ["name", "partner", "is_active", "amounts", "apr_max", "holds"]
    list_select_related = ["partner"]
    ordering = ["-created_at"]
    date_hierarchy = "created_at"
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

    @admin.display(description="Amounts", ordering="min_amount")
    def amounts(self, obj: Product) -> str:
        return f"{obj.min_amount:,.0f}-{obj.max_amount:,.0f}"

    def get_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        # The product's own fields first, then its terms: Django would list the fields of
        # the term mixins (partners.product_terms) first, as they are created first.
        fields = list(super().get_fields(request, obj))
        own = [name for name in ("partner", "name", "is_active") if name in fields]
        return own + [name for name in fields if name not in own]


@admin.register(TrafficSource)
class TrafficSourceAdmin(ValueChangeMessageMixin, admin.ModelAdmin):
    list_display = ["name", "is_operator", "created_at"]
    list_filter = ["is_operator"]
    search_fields = ["name"]
    ordering = ["-created_at"]
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
    list_display = ["prefix", "kind", "mode", "owner", "created", "last_used", "revoked"]
    list_filter = [
        "kind",
        "mode",
        ("revoked_at", admin.EmptyFieldListFilter),
        ("partner", PARTNER_FIELDS),
    ]
    list_select_related = ["partner", "source"]
    search_fields = ["=prefix", "name", "partner__name", "source__name"]
    ordering = ["-created_at"]
    date_hierarchy = "created_at"
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

    @admin.display(description="Partner or source")
    def owner(self, obj: ApiKey) -> str:
        return str(obj.partner or obj.source or "-")

    @admin.display(description="Created", ordering="created_at")
    def created(self, obj: ApiKey) -> str:
        return short_time(obj.created_at)

    @admin.display(description="Last used", ordering="last_used_at")
    def last_used(self, obj: ApiKey) -> str:
        return short_time(obj.last_used_at)

    @admin.display(description="Revoked", ordering="revoked_at")
    def revoked(self, obj: ApiKey) -> str:
        return short_time(obj.revoked_at)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # keys are issued from the partner or source page, shown once

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        fields = list(super().get_readonly_fields(request, obj))
        if partner_ids_for_user(request.user) is not None:
            fields.append("rate_limit_per_minute")  # the operator sets limits
        return fields

    @admin.action(description="Revoke selected keys", permissions=["change"])
    def revoke(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> None:
        revoked = 0
        for api_key in self.manageable(request, queryset).filter(revoked_at__isnull=True):
            revoke_api_key(api_key=api_key)
            admin_audit.record(request, api_key, "Revoked", changes={"revoked": ("no", "yes")})
            revoked += 1
        self.message_user(request, f"{revoked} key(s) revoked; they no longer authenticate.")
