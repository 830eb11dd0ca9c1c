"""Admin of payments received: recorded through ``billing.payments`` and allocated to
invoices, automatically or by hand.
"""

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
from django.utils.html import format_html

from billing import payments
from billing.models import Invoice, InvoiceStatus, Payment, PaymentAllocation
from partners import admin_audit
from partners.admin_fields import short_time
from partners.adminutils import PartnerScopedAdminMixin, ReadOnlyInline


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
    list_display = ["received", "partner", "bank_reference", "money", "unallocated"]
    list_filter = ["partner", "currency"]
    list_select_related = ["partner"]
    search_fields = ["=bank_reference", "partner__name"]
    ordering = ["-received_at"]
    date_hierarchy = "received_at"
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

    @admin.display(description="Received", ordering="received_at")
    def received(self, obj: Payment) -> str:
        return short_time(obj.received_at)

    @admin.display(description="Amount", ordering="amount")
    def money(self, obj: Payment) -> str:
        return f"{obj.currency} {obj.amount}"

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
        if created:
            left = payments.unallocated(payment)
            self.message_user(
                request,
                f"Payment {payment.bank_reference} recorded: {payment.currency} "
                f"{payment.amount}, {payment.amount - left} allocated, {left} unallocated.",
                messages.SUCCESS,
            )
        if not created:
            self.message_user(
                request, "That bank reference was recorded already.", messages.WARNING
            )

    @admin.action(description="Allocate what is left, oldest invoice first", permissions=["change"])
    def allocate_oldest_first(self, request: HttpRequest, queryset: QuerySet[Payment]) -> None:
        for payment in self.manageable(request, queryset):
            before = payments.unallocated(payment)
            payments.allocate_payment(payment_id=payment.pk)
            after = payments.unallocated(payment)
            admin_audit.record(
                request,
                payment,
                "Allocated oldest invoice first",
                changes={"unallocated": (before, after)},
            )
            self.message_user(
                request,
                f"{payment}: {payment.currency} {before - after} allocated, {after} left.",
                messages.SUCCESS,
            )

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
            invoice, amount = form.cleaned_data["invoice"], form.cleaned_data["amount"]
            before = payments.unallocated(payment)
            try:
                payments.allocate_payment(
                    payment_id=payment.pk, allocations=[(invoice.pk, str(amount))]
                )
            except payments.PaymentError as exc:
                self.message_user(request, str(exc), messages.ERROR)
            else:
                after = payments.unallocated(payment)
                admin_audit.record(
                    request,
                    payment,
                    f"Allocated {payment.currency} {amount} to {invoice}",
                    changes={"unallocated": (before, after)},
                )
                self.message_user(
                    request,
                    f"{payment.currency} {amount} allocated to {invoice}; {after} left.",
                    messages.SUCCESS,
                )
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
