from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html

from consent import admin_views, compliance, deletion, erasure, grants, ledger
from consent.models import (
    Checkpoint,
    ConsentGrant,
    ConsentText,
    ConsentWithdrawal,
    DeletionRequest,
    Disclosure,
    LedgerEntry,
    RevealRecord,
    Subject,
)
from partners.adminutils import PartnerScopedAdminMixin, ReadOnlyAdmin


class ReasonForm(forms.Form):
    reason = forms.CharField(
        max_length=200,
        min_length=5,
        widget=forms.Textarea(attrs={"rows": 3, "cols": 60}),
        help_text="Why; kept with the record. Do not type the applicant's personal data here.",
    )


def reason_action(
    model_admin: admin.ModelAdmin,
    request: HttpRequest,
    queryset: QuerySet[Any],
    *,
    action: str,
    title: str,
    warning: str,
) -> tuple[str | None, TemplateResponse | None]:
    """An action that asks for a reason on an intermediate page: the reason once given,
    or the page to show."""
    form = ReasonForm(request.POST if "apply" in request.POST else None)
    if "apply" in request.POST and form.is_valid():
        return form.cleaned_data["reason"], None
    opts = model_admin.model._meta
    context = {
        **model_admin.admin_site.each_context(request),
        "title": title,
        "warning": warning,
        "opts": opts,
        "form": form,
        "queryset": queryset,
        "action": action,
        "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
    }
    return None, TemplateResponse(request, "admin/consent/action_reason.html", context)


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
        if not super().has_delete_permission(request, obj):
            return False
        return obj is None or obj.published_at is None

    @admin.action(description="Publish (freeze the wording and its hash)", permissions=["change"])
    def publish(self, request: HttpRequest, queryset: QuerySet[ConsentText]) -> None:
        for text in queryset:
            grants.publish_text(text=text)


SUBJECT_FIELDS = (
    "id",
    "is_sandbox",
    "key_id",
    "created_at",
    "updated_at",
    "erased_at",
    "erased_by",
    "consent_history",
)


@admin.register(Subject)
class SubjectAdmin(ReadOnlyAdmin):
    # Only ids and times: personal data never appears on admin pages.
    list_display = ["id", "is_sandbox", "key_id", "created_at", "erased_at", "consent_history"]
    fields = SUBJECT_FIELDS
    readonly_fields = SUBJECT_FIELDS
    list_filter = ["is_sandbox", ("erased_at", admin.EmptyFieldListFilter)]
    search_fields = ["=id"]
    actions = ["erase"]
    change_list_template = "admin/consent/subject/change_list.html"

    def get_urls(self) -> list[URLPattern]:
        wrap = self.admin_site.admin_view
        custom = [
            path("find/", wrap(self.find_view), name="consent_subject_find"),
            path(
                "<uuid:subject_id>/history/",
                wrap(self.consent_history_view),
                name="consent_subject_history",
            ),
            path(
                "<uuid:subject_id>/reveal/", wrap(self.reveal_view), name="consent_subject_reveal"
            ),
        ]
        return custom + super().get_urls()

    def find_view(self, request: HttpRequest) -> HttpResponse:
        return admin_views.find_applicant(request, self)

    def consent_history_view(self, request: HttpRequest, subject_id: Any) -> HttpResponse:
        return admin_views.subject_history(request, self, subject_id)

    def reveal_view(self, request: HttpRequest, subject_id: Any) -> HttpResponse:
        return admin_views.reveal(request, self, subject_id)

    @admin.display(description="Consent history")
    def consent_history(self, subject: Subject) -> str:
        url = reverse("admin:consent_subject_history", args=[subject.pk])
        return format_html('<a href="{}">history</a>', url)

    def has_erase_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("consent.erase_subject")

    @admin.action(description="Erase (crypto-shred) the selected subjects", permissions=["erase"])
    def erase(self, request: HttpRequest, queryset: QuerySet[Subject]) -> TemplateResponse | None:
        reason, page = reason_action(
            self,
            request,
            queryset,
            action="erase",
            title="Erase subjects",
            warning="Erasure destroys each subject's data key: nothing can be decrypted "
            "afterwards, and open consents are withdrawn (partners are asked to delete). "
            "This cannot be undone.",
        )
        if reason is None:
            return page
        done = 0
        for subject in queryset:
            result = erasure.erase_subject(
                subject_id=subject.pk, reason=reason, erased_by=request.user.get_username()
            )
            if result.erased:
                done += 1
                self.log_change(request, subject, "Erased (crypto-shredded)")
        self.message_user(
            request,
            f"Erased {done} subject(s); {queryset.count() - done} had been erased before.",
            messages.SUCCESS,
        )
        return None


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
    actions = ["withdraw_consent"]

    @admin.display(boolean=True)
    def withdrawn(self, grant: ConsentGrant) -> bool:
        return hasattr(grant, "withdrawal")

    def has_withdraw_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("consent.add_consentwithdrawal")

    @admin.action(description="Withdraw consent (asks for a reason)", permissions=["withdraw"])
    def withdraw_consent(
        self, request: HttpRequest, queryset: QuerySet[ConsentGrant]
    ) -> TemplateResponse | None:
        reason, page = reason_action(
            self,
            request,
            queryset,
            action="withdraw_consent",
            title="Withdraw consent",
            warning="Withdrawal is effective at once: nothing more is disclosed, and every "
            "partner that received the data is asked to delete it.",
        )
        if reason is None:
            return page
        already = set(
            ConsentWithdrawal.objects.filter(grant__in=queryset).values_list("grant_id", flat=True)
        )
        for grant in queryset:
            grants.withdraw(grant_id=grant.pk, channel="admin", reason=reason)
            if grant.pk not in already:
                self.log_change(request, grant, "Withdrew consent")
        new = queryset.count() - len(already)
        self.message_user(
            request,
            f"Withdrew {new} consent(s); {len(already)} had been withdrawn before.",
            messages.SUCCESS,
        )
        return None


@admin.register(ConsentWithdrawal)
class ConsentWithdrawalAdmin(ReadOnlyAdmin):
    list_display = ["grant", "withdrawn_at", "channel"]


class AcknowledgementFilter(admin.SimpleListFilter):
    title = "acknowledgement"
    parameter_name = "ack"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [
            ("outstanding", "Outstanding"),
            ("overdue", "Overdue (past due, not acknowledged)"),
            ("acknowledged", "Acknowledged"),
        ]

    def queryset(
        self, request: HttpRequest, queryset: QuerySet[DeletionRequest]
    ) -> QuerySet[DeletionRequest]:
        value = self.value()
        if value == "outstanding":
            return deletion.outstanding(queryset)
        if value == "overdue":
            return deletion.overdue(queryset)
        if value == "acknowledged":
            return queryset.filter(acknowledged_at__isnull=False)
        return queryset


@admin.register(DeletionRequest)
class DeletionRequestAdmin(PartnerScopedAdminMixin, ReadOnlyAdmin):
    list_display = [
        "id",
        "partner",
        "withdrawal_id",
        "requested_at",
        "due_at",
        "acknowledged_at",
        "status",
    ]
    list_filter = [AcknowledgementFilter, "partner"]
    list_select_related = ["partner"]
    search_fields = ["=id", "=withdrawal__id", "=withdrawal__grant__id"]
    date_hierarchy = "requested_at"

    @admin.display(description="status")
    def status(self, request: DeletionRequest) -> str:
        return deletion.status_of(request)


@admin.register(RevealRecord)
class RevealRecordAdmin(ReadOnlyAdmin):
    # The reason is on the detail page only; the revealed values are never stored.
    list_display = ["id", "user", "subject", "fields", "revealed_at"]
    list_select_related = ["user"]
    search_fields = ["=subject__id"]


@admin.register(Disclosure)
class DisclosureAdmin(PartnerScopedAdminMixin, ReadOnlyAdmin):
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
    change_list_template = "admin/consent/checkpoint/change_list.html"

    def changelist_view(self, request: HttpRequest, extra_context: Any = None) -> Any:
        extra_context = {
            **(extra_context or {}),
            "title": f"Checkpoints (Ed25519 public key id {ledger.public_key_id()})",
            "ledger_key": compliance.ledger_key(),
        }
        return super().changelist_view(request, extra_context)

    def has_sign_permission(self, request: HttpRequest) -> bool:
        return bool(request.user.has_perm("consent.add_checkpoint"))

    @admin.action(description="Sign a checkpoint of the ledger now", permissions=["sign"])
    def checkpoint_now(self, request: HttpRequest, queryset: QuerySet[Checkpoint]) -> None:
        checkpoint = ledger.make_checkpoint()
        self.message_user(request, f"Signed checkpoint at size {checkpoint.tree_size}.")
