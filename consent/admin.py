from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from consent import grants, ledger
from consent.models import (
    Checkpoint,
    ConsentGrant,
    ConsentText,
    ConsentWithdrawal,
    Disclosure,
    LedgerEntry,
    Subject,
)
from partners.adminutils import ReadOnlyAdmin


@admin.register(ConsentText)
class ConsentTextAdmin(admin.ModelAdmin):
    list_display = ["version", "language", "jurisdiction", "published_at", "sha256"]
    readonly_fields = ["sha256", "published_at"]
    actions = ["publish"]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        if obj is not None and obj.published_at is not None:
            # Published wording is evidence: it never changes.
            return [f.name for f in ConsentText._meta.fields]
        return self.readonly_fields

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return obj is None or obj.published_at is None

    @admin.action(description="Publish (freeze the wording and its hash)")
    def publish(self, request: HttpRequest, queryset: QuerySet[ConsentText]) -> None:
        for text in queryset:
            grants.publish_text(text=text)


@admin.register(Subject)
class SubjectAdmin(ReadOnlyAdmin):
    # Only ids and times: personal data never appears on admin pages.
    list_display = ["id", "key_id", "created_at", "erased_at"]
    fields = ["id", "key_id", "created_at", "updated_at", "erased_at"]
    readonly_fields = fields


@admin.register(ConsentGrant)
class ConsentGrantAdmin(ReadOnlyAdmin):
    list_display = [
        "id",
        "source",
        "text",
        "scope",
        "channel",
        "collected_at",
        "expires_at",
        "withdrawn",
    ]
    list_filter = ["scope", "channel", "source"]
    search_fields = ["=id", "=subject__id"]
    exclude = ["ip_address", "user_agent"]

    @admin.display(boolean=True)
    def withdrawn(self, grant: ConsentGrant) -> bool:
        return hasattr(grant, "withdrawal")


@admin.register(ConsentWithdrawal)
class ConsentWithdrawalAdmin(ReadOnlyAdmin):
    list_display = ["grant", "withdrawn_at", "channel"]


@admin.register(Disclosure)
class DisclosureAdmin(ReadOnlyAdmin):
    list_display = ["id", "partner", "purpose", "reference", "disclosed_at"]
    list_filter = ["partner", "purpose"]
    search_fields = ["=grant__id", "=subject__id", "reference"]


@admin.register(LedgerEntry)
class LedgerEntryAdmin(ReadOnlyAdmin):
    list_display = ["seq", "kind", "created_at", "leaf_hash"]
    list_filter = ["kind"]


@admin.register(Checkpoint)
class CheckpointAdmin(ReadOnlyAdmin):
    list_display = ["tree_size", "root_hash", "signed_at", "key_id"]
    actions = ["checkpoint_now"]

    def changelist_view(self, request: HttpRequest, extra_context: Any = None) -> Any:
        extra_context = {
            **(extra_context or {}),
            "title": f"Checkpoints (Ed25519 public key id {ledger.public_key_id()})",
        }
        return super().changelist_view(request, extra_context)

    @admin.action(description="Sign a checkpoint of the ledger now")
    def checkpoint_now(self, request: HttpRequest, queryset: QuerySet[Checkpoint]) -> None:
        checkpoint = ledger.make_checkpoint()
        self.message_user(request, f"Signed checkpoint at size {checkpoint.tree_size}.")
