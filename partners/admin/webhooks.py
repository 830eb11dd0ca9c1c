"""Admin of webhook endpoints and messages: each message with its attempt log, replayed
on demand; endpoints with their signing secret rotated here.
"""

from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from partners import admin_audit, webhook_delivery
from partners.admin.accounts import PARTNER_FIELDS
from partners.admin_fields import short_time
from partners.adminutils import PartnerScopedAdminMixin, ReadOnlyInline
from partners.models import WebhookAttempt, WebhookEndpoint, WebhookMessage


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
    list_display = ["created", "partner", "event_type", "status", "next_attempt"]
    list_filter = ["status", "event_type", "is_sandbox", ("partner", PARTNER_FIELDS)]
    list_select_related = ["partner"]
    search_fields = ["=id", "dedupe_key"]
    ordering = ["-created_at"]
    date_hierarchy = "created_at"
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

    @admin.display(description="Created", ordering="created_at")
    def created(self, obj: WebhookMessage) -> str:
        return short_time(obj.created_at)

    @admin.display(description="Next attempt", ordering="next_attempt_at")
    def next_attempt(self, obj: WebhookMessage) -> str:
        if obj.delivered_at is not None:
            return f"delivered {short_time(obj.delivered_at)}"
        return short_time(obj.next_attempt_at)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    @admin.action(
        description="Replay selected messages (send again from the start)", permissions=["change"]
    )
    def replay(self, request: HttpRequest, queryset: QuerySet[WebhookMessage]) -> None:
        chosen = list(self.manageable(request, queryset))
        for message in chosen:
            before = message.status
            webhook_delivery.replay(message_id=message.pk)
            message.refresh_from_db(fields=["status", "attempts"])
            admin_audit.record(
                request, message, "Replayed", changes={"status": (before, message.status)}
            )
        self.message_user(
            request,
            f"{len(chosen)} message(s) queued again; each attempt appears on the message.",
            messages.SUCCESS,
        )


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(PartnerScopedAdminMixin, admin.ModelAdmin):
    partner_staff_can_change = True  # rotate secrets, re-enable after fixing the receiver
    list_display = ["partner", "address", "is_active", "disabled_reason"]
    list_filter = ["is_active", ("partner", PARTNER_FIELDS)]
    list_select_related = ["partner"]
    search_fields = ["partner__name", "url"]
    ordering = ["-created_at"]
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

    @admin.display(description="URL", ordering="url")
    def address(self, obj: WebhookEndpoint) -> str:
        return obj.url if len(obj.url) <= 48 else obj.url[:47] + "…"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # created with a secret shown once (partners.webhook_signing.create_endpoint)

    @admin.action(
        description="Rotate the signing secret (old one signs 24 h more)", permissions=["change"]
    )
    def rotate(self, request: HttpRequest, queryset: QuerySet[WebhookEndpoint]) -> None:
        for endpoint in self.manageable(request, queryset):
            secret = webhook_delivery.rotate_secret(endpoint_id=endpoint.pk)
            admin_audit.record(request, endpoint, "Rotated the signing secret")
            self.message_user(
                request,
                f"{endpoint}: new secret (copy it now, it is not shown again): {secret}",
                messages.WARNING,
            )
