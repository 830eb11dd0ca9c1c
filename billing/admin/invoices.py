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
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.decorators import method_decorator
from django.utils.html import format_html, format_html_join

from billing import documents, invoicing, statements
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
from billing.reconcile import reconcile_invoice
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


@admin.register(Invoice)
class InvoiceAdmin(PartnerScopedAdminMixin, ReadOnlyAdmin):
    list_display = [
        "__str__",
        "partner",
        "period_start",
        "status",
        "currency",
        "subtotal",
        "tax",
        "total",
        "issued_at",
        "due_date",
        "documents",
    ]
    list_filter = ["status", "currency", "partner"]
    inlines = [InvoiceLineInline, AllocationInline]
    actions = ["issue", "void"]
    readonly_fields = ["issuing"]

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
                invoicing.issue_invoice(invoice_id=invoice.id)
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
                issued += 1
        self.message_user(request, f"{issued} invoice(s) issued.")

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
        description="Void selected invoices (issues a full credit note each)",
        permissions=["finance"],
    )
    def void(self, request: HttpRequest, queryset: QuerySet[Invoice]) -> None:
        for invoice in queryset:
            try:
                note = invoicing.void_invoice(
                    invoice_id=invoice.id, reason="voided by finance in the admin"
                )
            except invoicing.InvoicingError as exc:
                self.message_user(request, str(exc), messages.ERROR)
            else:
                self.message_user(request, f"{invoice.number} void; credit note {note.number}.")


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
    list_filter = ["kind", "partner"]
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
