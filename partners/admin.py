from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from guardian.admin import GuardedModelAdmin

from partners import outbound
from partners.adminutils import ReadOnlyInline
from partners.keys import issue_api_key, revoke_api_key
from partners.models import (
    ApiKey,
    KeyMode,
    Partner,
    Product,
    TrafficSource,
    WebhookAttempt,
    WebhookEndpoint,
    WebhookMessage,
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
    fields = ["prefix", "mode", "name", "created_at", "last_used_at", "revoked_at"]
    readonly_fields = fields


class WebhookInline(ReadOnlyInline):
    model = WebhookEndpoint
    fields = ["url", "is_active", "created_at"]
    readonly_fields = fields


@admin.register(Partner)
class PartnerAdmin(GuardedModelAdmin):
    list_display = ["name", "status", "licence_number", "contact_email", "created_at"]
    list_filter = ["status"]
    search_fields = ["name", "legal_name", "licence_number"]
    prepopulated_fields = {"slug": ["name"]}
    inlines = [ProductInline, ApiKeyInline, WebhookInline]
    actions = ["issue_live_key", "issue_sandbox_key"]

    def _issue(self, request: HttpRequest, queryset: QuerySet[Partner], mode: str) -> None:
        for partner in queryset:
            issued = issue_api_key(partner=partner, mode=mode, name=f"admin:{request.user}")
            # Shown once: only the keyed hash is stored.
            self.message_user(
                request,
                f"{partner.name}: new {mode} key (copy it now, it is not shown again): "
                f"{issued.plaintext}",
                messages.WARNING,
            )

    @admin.action(description="Issue a live API key (shown once)")
    def issue_live_key(self, request: HttpRequest, queryset: QuerySet[Partner]) -> None:
        self._issue(request, queryset, KeyMode.LIVE)

    @admin.action(description="Issue a sandbox API key (shown once)")
    def issue_sandbox_key(self, request: HttpRequest, queryset: QuerySet[Partner]) -> None:
        self._issue(request, queryset, KeyMode.SANDBOX)


@admin.register(Product)
class ProductAdmin(admin.ModelAdmin):
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
    ]
    list_filter = ["is_active", "delivery_mode", "partner"]
    search_fields = ["name", "partner__name"]


@admin.register(TrafficSource)
class TrafficSourceAdmin(admin.ModelAdmin):
    list_display = ["name", "is_operator", "created_at"]
    actions = ["issue_key"]

    @admin.action(description="Issue a live source API key (shown once)")
    def issue_key(self, request: HttpRequest, queryset: QuerySet[TrafficSource]) -> None:
        for source in queryset:
            issued = issue_api_key(source=source, name=f"admin:{request.user}")
            self.message_user(
                request,
                f"{source.name}: new key (shown once): {issued.plaintext}",
                messages.WARNING,
            )


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    list_display = [
        "prefix",
        "kind",
        "mode",
        "partner",
        "source",
        "created_at",
        "last_used_at",
        "revoked_at",
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

    @admin.action(description="Revoke selected keys")
    def revoke(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> None:
        for api_key in queryset:
            revoke_api_key(api_key=api_key)


class WebhookAttemptInline(ReadOnlyInline):
    model = WebhookAttempt
    fields = ["attempted_at", "http_status", "latency_ms", "error"]
    readonly_fields = fields
    show_change_link = False


@admin.register(WebhookMessage)
class WebhookMessageAdmin(admin.ModelAdmin):
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
    list_filter = ["status", "event_type", "partner"]
    search_fields = ["=id", "dedupe_key"]
    readonly_fields = [
        "id",
        "partner",
        "endpoint",
        "event_type",
        "dedupe_key",
        "payload",
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

    @admin.action(description="Replay selected messages (send again from the start)")
    def replay(self, request: HttpRequest, queryset: QuerySet[WebhookMessage]) -> None:
        for message in queryset:
            outbound.replay(message_id=message.id)
        self.message_user(request, f"{queryset.count()} message(s) queued again.")


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(admin.ModelAdmin):
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
        return False  # created with a secret shown once (partners.webhooks.create_endpoint)

    @admin.action(description="Rotate the signing secret (old one signs 24 h more)")
    def rotate(self, request: HttpRequest, queryset: QuerySet[WebhookEndpoint]) -> None:
        for endpoint in queryset:
            secret = outbound.rotate_secret(endpoint_id=endpoint.pk)
            self.message_user(
                request,
                f"{endpoint}: new secret (copy it now, it is not shown again): {secret}",
                messages.WARNING,
            )
