"""Admin for the partner registry: ops record each partner's licence (registered by
``PartnersConfig.ready``; ``partners.admin`` holds the rest of the app's admin)."""

from __future__ import annotations

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone

from partners.registry import PartnerLicence


class InForceFilter(admin.SimpleListFilter):
    title = "in force today"
    parameter_name = "in_force"

    def lookups(self, request: HttpRequest, model_admin: object) -> list[tuple[str, str]]:
        return [("yes", "In force"), ("expired", "Expired"), ("future", "Not yet valid")]

    def queryset(
        self, request: HttpRequest, queryset: QuerySet[PartnerLicence]
    ) -> QuerySet[PartnerLicence]:
        today = timezone.now().date()  # UTC, as routing reads it
        if self.value() == "yes":
            return queryset.filter(valid_from__lte=today, expires_on__gte=today)
        if self.value() == "expired":
            return queryset.filter(expires_on__lt=today)
        if self.value() == "future":
            return queryset.filter(valid_from__gt=today)
        return queryset


@admin.register(PartnerLicence)
class PartnerLicenceAdmin(admin.ModelAdmin):
    list_display = ["partner", "number", "issuer", "valid_from", "expires_on"]
    list_filter = [InForceFilter, "issuer"]
    search_fields = ["partner__name", "number"]
    autocomplete_fields = ["partner"]
    ordering = ["expires_on"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[PartnerLicence]:
        return super().get_queryset(request).select_related("partner")
