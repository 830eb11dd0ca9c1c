"""Partners read their own invoices."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema
from rest_framework import generics, serializers
from rest_framework.request import Request
from rest_framework.response import Response

from billing.models import Invoice, InvoiceLine, InvoiceStatus
from partners.authentication import IsPartnerKey, client


class InvoiceLineOutput(serializers.ModelSerializer):
    class Meta:
        model = InvoiceLine
        fields = ["description", "kind", "entry_type", "product_id", "quantity", "amount"]


class InvoiceOutput(serializers.ModelSerializer):
    lines = InvoiceLineOutput(many=True)

    class Meta:
        model = Invoice
        fields = [
            "id",
            "number",
            "status",
            "currency",
            "period_start",
            "subtotal",
            "tax_rate",
            "tax",
            "total",
            "issued_at",
            "lines",
        ]


def partner_invoices(request: Request) -> QuerySet[Invoice]:
    # Drafts are the operator's working copies; partners see invoices once issued.
    return (
        Invoice.objects.filter(partner_id=client(request).partner_id)
        .exclude(status=InvoiceStatus.DRAFT)
        .prefetch_related("lines")
    )


class PartnerInvoiceListView(generics.ListAPIView):
    permission_classes = [IsPartnerKey]
    serializer_class = InvoiceOutput
    ordering = "-period_start"

    def get_queryset(self) -> QuerySet[Invoice]:
        return partner_invoices(self.request)

    @extend_schema(tags=["partner"], summary="Your issued invoices")
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().get(request, *args, **kwargs)


class PartnerInvoiceDetailView(generics.RetrieveAPIView):
    permission_classes = [IsPartnerKey]
    serializer_class = InvoiceOutput

    def get_queryset(self) -> QuerySet[Invoice]:
        return partner_invoices(self.request)

    @extend_schema(tags=["partner"], summary="One of your invoices")
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().get(request, *args, **kwargs)
