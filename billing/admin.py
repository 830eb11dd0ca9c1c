from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from billing.invoicing import issue_invoice
from billing.models import Charge, FeeSchedule, Invoice, InvoiceLine, InvoiceStatus
from partners.adminutils import ReadOnlyAdmin, ReadOnlyInline


@admin.register(FeeSchedule)
class FeeScheduleAdmin(admin.ModelAdmin):
    list_display = [
        "partner",
        "product",
        "currency",
        "cpl",
        "cpa",
        "cpf_rate",
        "cpf_min",
        "cpf_max",
        "effective_from",
        "effective_to",
    ]
    list_filter = ["partner", "currency"]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        # A schedule that priced charges is history: close it and add a new one instead.
        if obj is not None and obj.charges.exists():
            return [f.name for f in FeeSchedule._meta.fields if f.name != "effective_to"]
        return []


@admin.register(Charge)
class ChargeAdmin(ReadOnlyAdmin):
    list_display = [
        "id",
        "partner",
        "kind",
        "entry_type",
        "amount",
        "currency",
        "occurred_at",
        "invoice",
    ]
    list_filter = ["kind", "entry_type", "partner", "currency"]
    search_fields = ["=lead__id", "=id"]
    date_hierarchy = "occurred_at"
    list_select_related = ["partner", "invoice"]


class InvoiceLineInline(ReadOnlyInline):
    model = InvoiceLine
    fields = ["description", "kind", "entry_type", "quantity", "amount"]
    readonly_fields = fields
    show_change_link = False


@admin.register(Invoice)
class InvoiceAdmin(ReadOnlyAdmin):
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
    ]
    list_filter = ["status", "currency", "partner"]
    inlines = [InvoiceLineInline]
    actions = ["issue"]

    @admin.action(description="Issue selected drafts (assigns gapless numbers)")
    def issue(self, request: HttpRequest, queryset: QuerySet[Invoice]) -> None:
        for invoice in queryset.filter(status=InvoiceStatus.DRAFT).order_by("created_at"):
            issue_invoice(invoice_id=invoice.id)
