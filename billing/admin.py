"""Finance's admin: thin, every change goes through a billing service."""

from __future__ import annotations

from decimal import Decimal
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

from billing import (
    charging,
    documents,
    fees,
    fx,
    invoicing,
    partner_admin,  # noqa: F401  (registers the Partner and Product admins)
    payments,
    statements,
    tasks,
)
from billing.documents import html_document_policy
from billing.models import (
    Charge,
    CreditNote,
    CreditNoteLine,
    Currency,
    ExchangeRate,
    FeeSchedule,
    FeeTier,
    Invoice,
    InvoiceLine,
    InvoiceStatus,
    IssueOverride,
    PartnerBillingProfile,
    Payment,
    PaymentAllocation,
    PendingFee,
    ReturnReview,
    ReviewStatus,
)
from billing.pricing import FeeTerms
from billing.reconcile import reconcile_invoice
from marketplace import outbox
from partners.adminutils import PartnerScopedAdminMixin, ReadOnlyAdmin, ReadOnlyInline

# The columns of a schedule that hold its billing.pricing.FeeTerms (tiers are rows of their own).
FEE_FIELDS = ("cpl", "cpa", "cpf_rate", "cpf_min", "cpf_max", "revshare_rate")


class FeeScheduleForm(forms.ModelForm):
    class Meta:
        model = FeeSchedule
        fields = ["partner", "product", "currency", *FEE_FIELDS, "effective_from", "effective_to"]

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if self.errors or "partner" not in data:
            return data
        try:
            fees.check_currency(data["currency"])
            fees.check_no_overlap(
                partner=data["partner"],
                product=data.get("product"),
                effective_from=data["effective_from"],
                effective_to=data.get("effective_to"),
                exclude_id=self.instance.pk,
            )
        except fees.FeeScheduleError as exc:
            raise forms.ValidationError(str(exc)) from None
        return data


class FeeTierInline(admin.TabularInline):
    model = FeeTier
    extra = 0


@admin.register(FeeSchedule)
class FeeScheduleAdmin(PartnerScopedAdminMixin, admin.ModelAdmin):
    form = FeeScheduleForm
    inlines = [FeeTierInline]
    list_display = [
        "partner",
        "product",
        "version",
        "currency",
        *FEE_FIELDS,
        "effective_from",
        "effective_to",
    ]
    list_filter = ["partner", "currency"]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        # A schedule that priced charges is history: close it and add a new one instead.
        if obj is not None and obj.charges.exists():
            return [f.name for f in FeeSchedule._meta.fields if f.name != "effective_to"]
        return ["version"]

    def save_model(self, request: HttpRequest, obj: FeeSchedule, form: Any, change: bool) -> None:
        if change:
            super().save_model(request, obj, form, change)
            return
        data = form.cleaned_data
        created = fees.create_fee_schedule(
            partner=data["partner"],
            product=data.get("product"),
            effective_from=data["effective_from"],
            effective_to=data.get("effective_to"),
            currency=data.get("currency"),
            terms=FeeTerms(**{name: data.get(name) for name in FEE_FIELDS}),
        )
        obj.pk, obj.version = created.pk, created.version

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        if not super().has_delete_permission(request, obj):
            return False
        return obj is None or not obj.charges.exists()


@admin.register(Charge)
class ChargeAdmin(PartnerScopedAdminMixin, ReadOnlyAdmin):
    list_display = [
        "id",
        "partner",
        "kind",
        "entry_type",
        "reason",
        "amount",
        "currency",
        "occurred_at",
        "period",
        "credit_note",
    ]
    list_filter = ["kind", "entry_type", "partner", "currency"]
    search_fields = ["=lead__id", "=id"]
    date_hierarchy = "occurred_at"
    list_select_related = ["partner", "credit_note"]


@admin.register(ReturnReview)
class ReturnReviewAdmin(PartnerScopedAdminMixin, ReadOnlyAdmin):
    list_display = [
        "created_at",
        "partner",
        "lead",
        "reason_code",
        "return_rate",
        "why",
        "status",
        "decided_by",
    ]
    list_filter = ["status", "partner"]
    actions = ["approve", "reject"]

    def _decide(
        self, request: HttpRequest, queryset: QuerySet[ReturnReview], approve: bool
    ) -> None:
        credits = 0
        for review in queryset.filter(status=ReviewStatus.PENDING):
            credits += len(
                charging.decide_return(review_id=review.pk, approve=approve, user=request.user)
            )
        self.message_user(request, f"Decided; {credits} credit(s) booked.", messages.SUCCESS)

    def has_decide_permission(self, request: HttpRequest) -> bool:
        return bool(request.user.has_perm("billing.change_returnreview"))

    @admin.action(description="Approve: credit the returned leads", permissions=["decide"])
    def approve(self, request: HttpRequest, queryset: QuerySet[ReturnReview]) -> None:
        self._decide(request, queryset, True)

    @admin.action(description="Reject: no credit", permissions=["decide"])
    def reject(self, request: HttpRequest, queryset: QuerySet[ReturnReview]) -> None:
        self._decide(request, queryset, False)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


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


class PaymentForm(forms.ModelForm):
    # Not named like the "allocate_oldest_first" action: the admin looks a field's name up
    # on the ModelAdmin first, and showing the action as a field's value answered 500.
    allocate_now = forms.BooleanField(
        required=False, initial=True, label="Allocate to open invoices, oldest first"
    )

    class Meta:
        model = Payment
        fields = ["partner", "currency", "amount", "received_at", "bank_reference", "note"]


class PaymentAllocationInline(ReadOnlyInline):
    model = PaymentAllocation
    fields = readonly_fields = (
        "invoice",
        "amount",
        "created_at",
    )
    show_change_link = False


class ManualAllocationForm(forms.Form):
    invoice = forms.ModelChoiceField(queryset=Invoice.objects.none())
    amount = forms.DecimalField(max_digits=13, decimal_places=2, min_value=Decimal("0.01"))


@admin.register(Payment)
class PaymentAdmin(PartnerScopedAdminMixin, admin.ModelAdmin):
    """Payments are facts: recorded once, then allocated (oldest first or by hand), never
    edited or deleted. Allocating needs billing's change permission on payments."""

    form = PaymentForm
    list_display = ["received_at", "partner", "bank_reference", "currency", "amount", "unallocated"]
    list_filter = ["partner", "currency"]
    search_fields = ["bank_reference"]
    inlines = [PaymentAllocationInline]
    actions = ["allocate_oldest_first"]

    def get_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        if obj is None:
            return [*PaymentForm.Meta.fields, "allocate_now"]
        fields = [*PaymentForm.Meta.fields, "created_at", "unallocated"]
        if self.has_change_permission(request):
            fields.append("manual_allocation")
        return fields

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        if obj is None:
            return super().get_readonly_fields(request, obj)
        return self.get_fields(request, obj)

    @admin.display(description="Unallocated")
    def unallocated(self, obj: Payment) -> Any:
        return payments.unallocated(obj)

    @admin.display(description="Allocate by hand")
    def manual_allocation(self, obj: Payment) -> str:
        url = reverse("admin:billing_payment_allocate", args=[obj.pk])
        return format_html('<a href="{}">Choose the invoices and amounts</a>', url)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Model-level "change" is what allocating needs; a recorded payment's own page is
        # read-only.
        return obj is None and super().has_change_permission(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def save_model(self, request: HttpRequest, obj: Payment, form: Any, change: bool) -> None:
        data = form.cleaned_data
        try:
            payment, created = payments.record_payment(
                partner_id=data["partner"].pk,
                currency=data["currency"],
                amount=str(data["amount"]),
                received_at=data["received_at"],
                bank_reference=data["bank_reference"],
                note=data.get("note", ""),
                allocate=data.get("allocate_now", True),
            )
        except payments.PaymentError as exc:
            self.message_user(request, str(exc), messages.ERROR)
            return
        obj.pk = payment.pk
        if not created:
            self.message_user(
                request, "That bank reference was recorded already.", messages.WARNING
            )

    @admin.action(description="Allocate what is left, oldest invoice first", permissions=["change"])
    def allocate_oldest_first(self, request: HttpRequest, queryset: QuerySet[Payment]) -> None:
        for payment in self.manageable(request, queryset):
            payments.allocate_payment(payment_id=payment.pk)

    def get_urls(self) -> list[Any]:
        return [
            path(
                "<uuid:pk>/allocate/",
                self.admin_site.admin_view(self.allocate_view),
                name="billing_payment_allocate",
            ),
            *super().get_urls(),
        ]

    def allocate_view(self, request: HttpRequest, pk: Any) -> HttpResponse:
        if not self.has_change_permission(request):
            raise PermissionDenied
        # Scoped like the list, so a payment the user cannot see is a 404.
        payment: Payment = get_object_or_404(self.get_queryset(request), pk=pk)
        form = ManualAllocationForm(request.POST if request.method == "POST" else None)
        form.fields["invoice"].queryset = Invoice.objects.filter(  # type: ignore[attr-defined]
            partner_id=payment.partner_id,
            currency=payment.currency,
            status__in=[InvoiceStatus.ISSUED, InvoiceStatus.PARTLY_PAID],
        ).order_by("issued_at")
        if request.method == "POST" and form.is_valid():
            try:
                payments.allocate_payment(
                    payment_id=payment.pk,
                    allocations=[
                        (form.cleaned_data["invoice"].pk, str(form.cleaned_data["amount"]))
                    ],
                )
            except payments.PaymentError as exc:
                self.message_user(request, str(exc), messages.ERROR)
            else:
                self.message_user(request, "Allocated.", messages.SUCCESS)
                return redirect("admin:billing_payment_change", payment.pk)
        return TemplateResponse(
            request,
            "billing/allocate.html",
            {
                **self.admin_site.each_context(request),
                "opts": self.model._meta,
                "payment": payment,
                "unallocated": payments.unallocated(payment),
                "form": form,
                "title": "Allocate payment",
            },
        )


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


class ExchangeRateForm(forms.ModelForm):
    class Meta:
        model = ExchangeRate
        fields = ["from_currency", "to_currency", "rate", "effective_from", "source"]
        help_texts = {
            "rate": "Units of the second currency for one unit of the first (8 places).",
            "source": "Where the number comes from, e.g. 'PBOC central parity 2026-11-02'.",
        }

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if self.errors:
            return data
        try:
            fx.check_rate(
                from_currency=data["from_currency"],
                to_currency=data["to_currency"],
                rate=data["rate"],
                effective_from=data["effective_from"],
                source=data["source"],
            )
        except fx.ExchangeRateError as refused:
            self.add_error(refused.field or None, str(refused))
        return data


@admin.register(ExchangeRate)
class ExchangeRateAdmin(admin.ModelAdmin):
    """Finance enters dated rates with their source; a rate is never edited or deleted
    (charges record the one they used): a correction is a new rate from a later time."""

    form = ExchangeRateForm
    list_display = [
        "from_currency",
        "to_currency",
        "rate",
        "effective_from",
        "source",
        "entered_by",
        "created_at",
    ]
    list_filter = ["from_currency", "to_currency"]
    date_hierarchy = "effective_from"
    ordering = ["-effective_from"]

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        made = fx.record_rate(
            from_currency=obj.from_currency,
            to_currency=obj.to_currency,
            rate=obj.rate,
            effective_from=obj.effective_from,
            source=obj.source,
            user=request.user,
        )
        obj.pk = made.pk
        waiting = PendingFee.objects.filter(
            resolved_at__isnull=True,
            from_currency=made.from_currency,
            to_currency=made.to_currency,
            occurred_at__gte=made.effective_from,
        ).count()
        # Fees that waited for this rate are booked by the catch-up charger (a worker).
        outbox.enqueue(tasks.charge_unbilled_events)
        self.message_user(
            request,
            f"Rate entered. {waiting} fee(s) waiting for a {made.from_currency}->"
            f"{made.to_currency} rate are being booked.",
            messages.SUCCESS,
        )


@admin.register(PendingFee)
class PendingFeeAdmin(PartnerScopedAdminMixin, ReadOnlyAdmin):
    """Fees that are due but wait for an exchange rate ("needs rate"): the partner's
    invoices covering them cannot be issued until finance enters the rate."""

    list_display = [
        "partner",
        "kind",
        "from_currency",
        "to_currency",
        "occurred_at",
        "created_at",
        "resolved_at",
    ]
    list_filter = [
        "kind",
        "from_currency",
        "to_currency",
        ("resolved_at", admin.EmptyFieldListFilter),
    ]
    date_hierarchy = "occurred_at"
    list_select_related = ["partner"]
    ordering = ["-created_at"]
