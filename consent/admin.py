from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.db.models import BooleanField, Case, QuerySet, Value, When
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html

from consent import admin_jobs, admin_views, compliance, deletion, erasure, grants, ledger
from consent.models import (
    AuditJob,
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
    list_display = ["version", "title", "language", "jurisdiction", "published_at"]
    list_filter = ["language", "jurisdiction", ("published_at", admin.EmptyFieldListFilter)]
    search_fields = ["version", "title", "=sha256"]
    ordering = ["-created_at"]
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
    list_display = ["id", "is_sandbox", "created_at", "erased_at", "consent_history"]
    fields = SUBJECT_FIELDS
    readonly_fields = SUBJECT_FIELDS
    list_filter = ["is_sandbox", ("erased_at", admin.EmptyFieldListFilter)]
    search_fields = ["=id"]
    ordering = ["-created_at"]
    date_hierarchy = "created_at"
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
    # Fits 1366 px beside the filters; the text, channel and expiry are on the detail page.
    list_display = ["id", "source", "scope", "collected_at", "withdrawn"]
    list_filter = ["scope", "channel", "source", ("withdrawal", admin.EmptyFieldListFilter)]
    list_select_related = ["source", "text", "withdrawal"]
    search_fields = ["=id", "=subject__id"]
    ordering = ["-collected_at"]
    date_hierarchy = "collected_at"
    exclude = ["ip_address", "user_agent"]
    actions = ["withdraw_consent"]

    def get_urls(self) -> list[URLPattern]:
        wrap = self.admin_site.admin_view
        custom = [
            path(
                "<uuid:grant_id>/withdraw/",
                wrap(self.withdraw_view),
                name="consent_consentgrant_withdraw",
            ),
        ]
        return custom + super().get_urls()

    def withdraw_view(self, request: HttpRequest, grant_id: Any) -> HttpResponse:
        return admin_jobs.withdraw(request, self, grant_id)

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
        acting_user = {"id": str(request.user.pk), "username": request.user.get_username()}
        for grant in queryset:
            grants.withdraw(
                grant_id=grant.pk, channel="admin", reason=reason, acting_user=acting_user
            )
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
    # The reason is on the detail page only (free text staff typed).
    list_display = ["id", "grant_id", "withdrawn_at", "channel"]
    list_filter = ["channel"]
    search_fields = ["=grant__id", "=grant__subject__id"]
    ordering = ["-withdrawn_at"]
    date_hierarchy = "withdrawn_at"


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
    # Fits 1366 px beside the filters: the withdrawal and acknowledgement times are on the
    # detail page (and searchable by withdrawal or receipt id).
    list_display = ["id", "partner", "requested_at", "due_at", "status"]
    list_filter = [AcknowledgementFilter, "partner"]
    list_select_related = ["partner"]
    search_fields = ["=id", "=withdrawal__id", "=withdrawal__grant__id"]
    ordering = ["-requested_at"]
    date_hierarchy = "requested_at"

    @admin.display(description="status")
    def status(self, request: DeletionRequest) -> str:
        return deletion.status_of(request)


@admin.register(RevealRecord)
class RevealRecordAdmin(ReadOnlyAdmin):
    # The reason is on the detail page only; the revealed values are never stored.
    list_display = ["revealed_at", "user", "subject_id", "fields"]
    list_select_related = ["user"]
    list_filter = [("user", admin.RelatedOnlyFieldListFilter)]
    search_fields = ["=id", "=subject__id"]
    ordering = ["-revealed_at"]
    date_hierarchy = "revealed_at"


@admin.register(Disclosure)
class DisclosureAdmin(PartnerScopedAdminMixin, ReadOnlyAdmin):
    list_display = ["id", "partner", "reference", "disclosed_at"]
    list_filter = ["partner", "purpose"]
    list_select_related = ["partner"]
    search_fields = ["=id", "=grant__id", "=subject__id", "reference"]
    ordering = ["-disclosed_at"]
    date_hierarchy = "disclosed_at"


@admin.register(LedgerEntry)
class LedgerEntryAdmin(ReadOnlyAdmin):
    list_display = ["seq", "kind", "created_at", "short_leaf_hash"]
    list_filter = ["kind"]
    search_fields = ["=seq", "=leaf_hash"]
    ordering = ["-id"]  # arrival order, newest first (pending entries have no seq yet)
    date_hierarchy = "created_at"
    show_full_result_count = False  # a million-row ledger: no second COUNT(*)

    @admin.display(description="leaf hash", ordering="leaf_hash")
    def short_leaf_hash(self, entry: LedgerEntry) -> str:
        return f"{entry.leaf_hash[:16]}…" if entry.leaf_hash else "pending"


@admin.register(Checkpoint)
class CheckpointAdmin(ReadOnlyAdmin):
    list_display = ["tree_size", "short_root_hash", "signed_at", "short_key_id"]
    list_filter = ["key_id"]
    search_fields = ["=tree_size", "=root_hash"]
    ordering = ["-signed_at", "-id"]
    date_hierarchy = "signed_at"
    actions = ["checkpoint_now"]

    @admin.display(description="root hash", ordering="root_hash")
    def short_root_hash(self, checkpoint: Checkpoint) -> str:
        return f"{checkpoint.root_hash[:16]}…"

    @admin.display(description="key id", ordering="key_id")
    def short_key_id(self, checkpoint: Checkpoint) -> str:
        return f"{checkpoint.key_id[:16]}…"

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


@admin.register(AuditJob)
class AuditJobAdmin(ReadOnlyAdmin):
    """Exports and verifications: who asked for what and when, and how it ended. The
    progress page and the file belong to the officer who asked (``consent.admin_jobs``)."""

    list_display = ["id", "kind", "state", "requested_by", "created_at", "page"]
    list_filter = ["kind", "state", ("requested_by", admin.RelatedOnlyFieldListFilter)]
    list_select_related = ["requested_by"]
    search_fields = ["=id", "=subject__id"]
    ordering = ["-created_at"]
    date_hierarchy = "created_at"
    exclude = ["result"]
    readonly_fields = ["outcome"]
    change_list_template = "admin/consent/auditjob/change_list.html"

    def get_urls(self) -> list[URLPattern]:
        wrap = self.admin_site.admin_view
        custom = [
            path("export/", wrap(self.export_view), name="consent_auditjob_export"),
            path("verify/", wrap(self.verify_view), name="consent_auditjob_verify"),
            path(
                "<uuid:job_id>/progress/",
                wrap(self.progress_view),
                name="consent_auditjob_progress",
            ),
            path("<uuid:job_id>/status/", wrap(self.status_view), name="consent_auditjob_status"),
            path(
                "<uuid:job_id>/download/",
                wrap(self.download_view),
                name="consent_auditjob_download",
            ),
        ]
        return custom + super().get_urls()

    def changelist_view(self, request: HttpRequest, extra_context: Any = None) -> Any:
        extra_context = {
            **(extra_context or {}),
            "can_start": request.user.has_perm(admin_jobs.START_PERMISSION),
        }
        return super().changelist_view(request, extra_context)

    def get_queryset(self, request: HttpRequest) -> QuerySet[AuditJob]:
        # Whether the viewer asked for the job: only then is its page (and file) theirs.
        return (
            super()
            .get_queryset(request)
            .annotate(
                mine=Case(
                    When(requested_by_id=request.user.pk, then=Value(True)),
                    default=Value(False),
                    output_field=BooleanField(),
                )
            )
        )

    @admin.display(description="page")
    def page(self, job: AuditJob) -> str:
        if not getattr(job, "mine", False):
            return "-"
        url = reverse("admin:consent_auditjob_progress", args=[job.pk])
        label = "download" if job.kind == AuditJob.Kind.EXPORT else "report"
        return format_html('<a href="{}">{}</a>', url, label)

    @admin.display(description="outcome")
    def outcome(self, job: AuditJob) -> str:
        if job.error:
            return job.error
        result = job.result or {}
        if job.kind == AuditJob.Kind.VERIFY and result:
            verdict = "OK" if result.get("ok") else f"FAILED ({result.get('problem_count')})"
            return f"{verdict}: {result.get('entries_checked')} entries checked"
        if result:
            return f"{result.get('entries')} entries (tree size {result.get('tree_size')})"
        return "-"

    def export_view(self, request: HttpRequest) -> HttpResponse:
        return admin_jobs.start_export(request, self)

    def verify_view(self, request: HttpRequest) -> HttpResponse:
        return admin_jobs.start_verify(request, self)

    def progress_view(self, request: HttpRequest, job_id: Any) -> HttpResponse:
        return admin_jobs.progress(request, self, job_id)

    def status_view(self, request: HttpRequest, job_id: Any) -> HttpResponse:
        return admin_jobs.status(request, self, job_id)

    def download_view(self, request: HttpRequest, job_id: Any) -> HttpResponse:
        return admin_jobs.download(request, self, job_id)
