"""Admin of invoices and what hangs on them: issuing (with an override form when
reconciliation is not clean), voiding, the PDF and HTML documents, issue overrides, credit
notes and partners' billing profiles.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.decorators import method_decorator
from django.utils.html import format_html, format_html_join

from billing import documents, invoice_runs, invoicing, statements, tasks
from billing.documents import html_document_policy
from billing.models import (
    CreditNote,
    CreditNoteLine,
    Currency,
    Invoice,
    InvoiceLine,
    InvoiceStatus,
    IssueOverride,
    PartnerBillingProfile,
    PaymentAllocation,
)
from billing.periods import Period, PeriodError
from billing.reconcile import reconcile_invoice
from partners import admin_audit
from partners.adminutils import PartnerScopedAdminMixin, ReadOnlyAdmin, ReadOnlyInline


class InvoiceLineInline(ReadOnlyInline):
    model = InvoiceLine
    fields = readonly_fields = (
        "description",
        "kind",
        "entry_type",
        "quantity",
        "amount",
    )
    show_change_link = False


class AllocationInline(ReadOnlyInline):
    model = PaymentAllocation
    fk_name = "invoice"
    fields = readonly_fields = (
        "payment",
        "amount",
        "created_at",
    )
    show_change_link = False


class RunForm(forms.Form):
    period = forms.CharField(
        max_length=7, help_text="The month, YYYY-MM (the current month or an earlier one)."
    )
    issue = forms.BooleanField(
        required=False,
        initial=True,
        label="Issue the drafts too",
        help_text="Each draft whose reconciliation is clean gets its gapless number; the "
        "others stay drafts and are listed.",
    )

    def clean_period(self) -> Period:
        try:
            period = Period.parse(self.cleaned_data["period"])
        except PeriodError as exc:
            raise forms.ValidationError(str(exc)) from None
        if period.start > timezone.now().date():
            raise forms.ValidationError(f"{period} has not started: nothing to invoice yet.")
        return period


class VoidForm(forms.Form):
    reason = forms.CharField(
        min_length=5,
        max_length=200,
        widget=forms.Textarea(attrs={"rows": 3, "cols": 60}),
        help_text="Printed on the credit note and kept in each invoice's history.",
    )


@admin.register(Invoice)
class InvoiceAdmin(PartnerScopedAdminMixin, ReadOnlyAdmin):
    # Fits 1366 px beside the navigation and filters: the month, one money column.
    list_display = ["__str__", "partner", "period", "status", "amount", "issued", "documents"]
    list_filter = ["status", "currency", "partner"]
    list_select_related = ["partner"]
    search_fields = ["=number", "partner__name"]
    ordering = ["-created_at"]
    date_hierarchy = "period_start"
    inlines = [InvoiceLineInline, AllocationInline]
    actions = ["issue", "void"]
    readonly_fields = ["issuing", "documents"]

    @admin.display(description="Issuing")
    def issuing(self, obj: Invoice) -> str:
        if obj.status == InvoiceStatus.DRAFT:
            url = reverse("admin:billing_invoice_issue", args=[obj.pk])
            return format_html('<a href="{}">Check reconciliation and issue</a>', url)
        override = IssueOverride.objects.filter(invoice=obj).first()
        if override is None:
            return "Issued with a clean reconciliation."
        url = reverse("admin:billing_issueoverride_change", args=[override.pk])
        return format_html(
            'Issued by override of {} on {}: <a href="{}">{} difference(s), reason</a>',
            override.actor,
            f"{override.created_at:%Y-%m-%d %H:%M}",
            url,
            len(override.differences),
        )

    @admin.display(description="Period", ordering="period_start")
    def period(self, obj: Invoice) -> str:
        return f"{obj.period_start:%Y-%m}"

    @admin.display(description="Total", ordering="total")
    def amount(self, obj: Invoice) -> str:
        return f"{obj.currency} {obj.total}"

    @admin.display(description="Issued", ordering="issued_at")
    def issued(self, obj: Invoice) -> str:
        return f"{obj.issued_at:%Y-%m-%d}" if obj.issued_at else "-"

    @admin.display(description="Documents")
    def documents(self, obj: Invoice) -> str:
        links = [
            (reverse(f"admin:billing_invoice_{kind}", args=[obj.pk]), kind.upper())
            for kind in ("html", "pdf", "csv")
        ]
        return format_html_join(" ", '<a href="{}">{}</a>', links)

    def get_urls(self) -> list[Any]:
        view = self.admin_site.admin_view
        return [
            path("<uuid:pk>/html/", view(self.html_view), name="billing_invoice_html"),
            path("<uuid:pk>/pdf/", view(self.pdf_view), name="billing_invoice_pdf"),
            path("<uuid:pk>/csv/", view(self.csv_view), name="billing_invoice_csv"),
            path("<uuid:pk>/issue/", view(self.issue_view), name="billing_invoice_issue"),
            path("generate/", view(self.generate_view), name="billing_invoice_generate"),
            path("runs/<slug:run_id>/", view(self.run_view), name="billing_invoice_run"),
            path(
                "runs/<slug:run_id>/status/",
                view(self.run_status_view),
                name="billing_invoice_run_status",
            ),
            *super().get_urls(),
        ]

    def _invoice(self, request: HttpRequest, pk: Any) -> Invoice:
        if not self.has_view_permission(request):
            raise PermissionDenied
        # Scoped like the list: partner staff reach only their partners' invoices.
        invoice: Invoice = get_object_or_404(self.get_queryset(request), pk=pk)
        return invoice

    # Not documents.html_document_policy: in this class body "documents" is the column above.
    @method_decorator(html_document_policy)
    def html_view(self, request: HttpRequest, pk: Any) -> HttpResponse:
        return HttpResponse(documents.render_html(self._invoice(request, pk)))

    def pdf_view(self, request: HttpRequest, pk: Any) -> HttpResponse:
        return HttpResponse(
            documents.render_pdf(self._invoice(request, pk)), content_type="application/pdf"
        )

    def csv_view(self, request: HttpRequest, pk: Any) -> HttpResponse:
        return HttpResponse(
            b"".join(s.encode() for s in documents.csv_stream(self._invoice(request, pk))),
            content_type="text/csv",
        )

    def has_finance_permission(self, request: HttpRequest) -> bool:
        return bool(request.user.has_perm("billing.change_invoice"))

    @admin.action(
        description="Issue selected drafts (assigns gapless numbers)", permissions=["finance"]
    )
    def issue(self, request: HttpRequest, queryset: QuerySet[Invoice]) -> None:
        drafts = self.manageable(request, queryset).filter(status=InvoiceStatus.DRAFT)
        issued = 0
        for invoice in drafts.order_by("created_at"):
            try:
                issued_invoice = invoicing.issue_invoice(invoice_id=invoice.id)
            except invoicing.IssueRefused as refused:
                url = reverse("admin:billing_invoice_issue", args=[invoice.pk])
                self.message_user(
                    request,
                    format_html(
                        '{}: {} <a href="{}">See the differences, or issue with a reason</a>.',
                        str(refused),
                        "; ".join(refused.differences[:3])
                        + (" ..." if len(refused.differences) > 3 else ""),
                        url,
                    ),
                    messages.ERROR,
                )
            else:
                admin_audit.record(
                    request,
                    issued_invoice,
                    f"Issued as {issued_invoice.number}",
                    changes={"status": ("draft", issued_invoice.status)},
                )
                issued += 1
        self.message_user(request, f"{issued} invoice(s) issued.", messages.SUCCESS)

    def issue_view(self, request: HttpRequest, pk: Any) -> HttpResponse:
        """A draft's reconciliation differences, and issuing it anyway with a reason
        (recorded as an IssueOverride)."""
        if not self.has_finance_permission(request):
            raise PermissionDenied
        invoice: Invoice = get_object_or_404(
            self.manageable(request, self.get_queryset(request)), pk=pk
        )
        if invoice.status != InvoiceStatus.DRAFT:
            self.message_user(request, f"{invoice} is issued already.", messages.WARNING)
            return redirect("admin:billing_invoice_change", invoice.pk)
        form = IssueOverrideForm(request.POST if request.method == "POST" else None)
        if request.method == "POST" and form.is_valid():
            try:
                issued = invoicing.issue_invoice(
                    invoice_id=invoice.id,
                    override=invoicing.Override(
                        reason=form.cleaned_data["reason"], user=request.user
                    ),
                )
            except invoicing.InvoicingError as exc:
                form.add_error("reason", str(exc))
            else:
                admin_audit.record(
                    request,
                    issued,
                    f"Issued as {issued.number} despite reconciliation differences",
                    changes={"status": ("draft", issued.status)},
                    reason=form.cleaned_data["reason"],
                )
                self.message_user(request, f"{issued.number} issued.", messages.SUCCESS)
                return redirect("admin:billing_invoice_change", issued.pk)
        return TemplateResponse(
            request,
            "billing/issue_override.html",
            {
                **self.admin_site.each_context(request),
                "opts": self.model._meta,
                "title": f"Issue {invoice}",
                "invoice": invoice,
                "differences": reconcile_invoice(invoice).differences,
                "form": form,
            },
        )

    @admin.action(
        description="Void selected invoices (issues a full credit note each; asks why)",
        permissions=["finance"],
    )
    def void(self, request: HttpRequest, queryset: QuerySet[Invoice]) -> HttpResponse | None:
        chosen = list(self.manageable(request, queryset).select_related("partner"))
        form = VoidForm(request.POST if "confirmed" in request.POST else None)
        if form.is_bound and form.is_valid():
            reason = form.cleaned_data["reason"]
            for invoice in chosen:
                try:
                    note = invoicing.void_invoice(invoice_id=invoice.id, reason=reason)
                except invoicing.InvoicingError as exc:
                    self.message_user(request, f"{invoice}: {exc}", messages.ERROR)
                    continue
                admin_audit.record(
                    request,
                    invoice,
                    f"Voided; credit note {note.number}",
                    changes={"status": (invoice.status, InvoiceStatus.VOID)},
                    reason=reason,
                )
                self.message_user(
                    request, f"{invoice.number} void; credit note {note.number}.", messages.SUCCESS
                )
            return None
        return TemplateResponse(
            request,
            "admin/ops/form.html",
            {
                **self.admin_site.each_context(request),
                "opts": self.model._meta,
                "title": "Void invoices",
                "intro": "Each invoice below is voided by a credit note for its full amount. "
                "This cannot be undone.",
                "row_headings": ["Invoice", "Partner", "Status", "Total"],
                "rows": [
                    (str(i), i.partner.name, i.get_status_display(), f"{i.currency} {i.total}")
                    for i in chosen
                ],
                "hidden_ids": [str(i.pk) for i in chosen],
                "action_name": "void",
                "form": form,
                "submit_label": "Void these invoices",
            },
        )

    def generate_view(self, request: HttpRequest) -> HttpResponse:
        """Start a period's invoice run (a worker drafts and issues; see the progress)."""
        if not self.has_finance_permission(request):
            raise PermissionDenied
        form = RunForm(
            request.POST if request.method == "POST" else None,
            initial={"period": str(Period.before(timezone.now().date()))},
        )
        if request.method == "POST" and form.is_valid():
            run_id = tasks.start_invoice_run(
                period=form.cleaned_data["period"],
                issue=form.cleaned_data["issue"],
                user_id=request.user.pk,
            )
            self.message_user(
                request, f"Invoice run of {form.cleaned_data['period']} started.", messages.SUCCESS
            )
            return redirect("admin:billing_invoice_run", run_id)
        return TemplateResponse(
            request,
            "admin/ops/form.html",
            {
                **self.admin_site.each_context(request),
                "opts": self.model._meta,
                "title": "Generate a period's invoices",
                "intro": "Drafts every partner's invoices for the month (credit notes for "
                "corrections of billed months too), then issues the drafts if asked. It runs "
                "in a worker; the next page shows its progress.",
                "form": form,
                "submit_label": "Generate",
            },
        )

    def _run(self, request: HttpRequest, run_id: str) -> invoice_runs.RunState:
        if not self.has_finance_permission(request):
            raise PermissionDenied
        found = invoice_runs.state(run_id)
        if found is None:
            raise Http404("no such invoice run")
        return found

    def run_view(self, request: HttpRequest, run_id: str) -> HttpResponse:
        run = self._run(request, run_id)
        if request.method == "POST" and "again" in request.POST:
            again = tasks.start_invoice_run_again(run_id=run_id, user_id=request.user.pk)
            if again is None:
                self.message_user(
                    request, "Only a failed run can be started again.", messages.ERROR
                )
                return redirect("admin:billing_invoice_run", run_id)
            self.message_user(
                request, f"Invoice run of {run['period']} started again.", messages.SUCCESS
            )
            return redirect("admin:billing_invoice_run", again)
        return TemplateResponse(
            request,
            "admin/ops/invoice_run.html",
            {
                **self.admin_site.each_context(request),
                "opts": self.model._meta,
                "title": f"Invoice run of {run['period']}",
                "run": run,
                "period_start": Period.parse(run["period"]).start,
                "status_url": reverse("admin:billing_invoice_run_status", args=[run_id]),
            },
        )

    def run_status_view(self, request: HttpRequest, run_id: str) -> HttpResponse:
        return JsonResponse(dict(self._run(request, run_id)))


class IssueOverrideForm(forms.Form):
    reason = forms.CharField(
        min_length=invoicing.MIN_OVERRIDE_REASON,
        max_length=500,
        widget=forms.Textarea(attrs={"rows": 3, "cols": 60}),
        help_text="Why this invoice is issued although reconciliation found differences; "
        "kept with the differences, your name and the time.",
    )


@admin.register(IssueOverride)
class IssueOverrideAdmin(PartnerScopedAdminMixin, ReadOnlyAdmin):
    """Invoices issued although reconciliation was not clean: who, when, why, and the
    differences as they were then."""

    list_display = ["created_at", "invoice", "partner", "actor", "difference_count"]
    list_filter = ["partner"]
    ordering = ["-created_at"]
    date_hierarchy = "created_at"
    list_select_related = ["invoice", "partner"]
    fields = readonly_fields = (
        "invoice",
        "partner",
        "actor",
        "decided_by",
        "created_at",
        "reason",
        "listed",
    )

    @admin.display(description="Differences")
    def difference_count(self, obj: IssueOverride) -> int:
        return len(obj.differences)

    @admin.display(description="Differences when issued")
    def listed(self, obj: IssueOverride) -> str:
        return format_html(
            "<ul>{}</ul>", format_html_join("", "<li>{}</li>", ((d,) for d in obj.differences))
        )


class CreditNoteLineInline(ReadOnlyInline):
    model = CreditNoteLine
    fields = readonly_fields = (
        "description",
        "kind",
        "entry_type",
        "quantity",
        "amount",
    )
    show_change_link = False


@admin.register(CreditNote)
class CreditNoteAdmin(PartnerScopedAdminMixin, ReadOnlyAdmin):
    list_display = ["number", "partner", "invoice", "kind", "currency", "total", "issued_at"]
    list_filter = ["kind", "partner", "currency"]
    list_select_related = ["partner", "invoice"]
    search_fields = ["=number", "=invoice__number", "partner__name"]
    ordering = ["-issued_at"]
    date_hierarchy = "issued_at"
    inlines = [CreditNoteLineInline]


@admin.register(PartnerBillingProfile)
class PartnerBillingProfileAdmin(PartnerScopedAdminMixin, admin.ModelAdmin):
    list_display = [
        "partner",
        "return_rate_cap",
        "credit_limit",
        "credit_limit_currency",
        "payment_terms_days",
        "invoiced_through",
    ]
    readonly_fields = ["invoiced_through", "statement"]
    list_select_related = ["partner"]
    search_fields = ["partner__name"]
    ordering = ["partner__name"]

    @admin.display(description="Statement")
    def statement(self, obj: PartnerBillingProfile) -> str:
        parts = []
        for currency in Currency.values:
            s = statements.statement(partner_id=obj.partner_id, currency=currency)
            if not (s.invoiced or s.paid or s.drafts or s.uninvoiced):
                continue
            aging = format_html_join(" ", "<b>{}</b> {}", ((k, v) for k, v in s.aging.items()))
            parts.append(
                format_html(
                    "{}: invoiced {}, credited {}, paid {} (unapplied {}), balance <b>{}</b>; "
                    "drafts {}, not yet invoiced {} (VAT included): exposure <b>{}</b>."
                    "<br>Aging by due date: {}",
                    currency,
                    s.invoiced,
                    s.credited,
                    s.paid,
                    s.unapplied,
                    s.balance,
                    s.drafts,
                    s.uninvoiced,
                    s.exposure,
                    aging,
                )
            )
        return format_html_join("", "<p>{}</p>", ((p,) for p in parts)) or "Nothing billed yet."
