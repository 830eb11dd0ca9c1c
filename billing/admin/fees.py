"""Admin of what partners pay: fee schedules with their tiers (checked by
``billing.fees`` before saving: one currency, no overlapping spans) and the dated exchange
rates fees in another currency are converted with.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.http import HttpRequest

from billing import fee_cards, fees, fx, tasks
from billing.models import ExchangeRate, FeeSchedule, FeeTier, PendingFee
from billing.pricing import FeeTerms
from marketplace import outbox
from partners.adminutils import PartnerScopedAdminMixin

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
    list_display = ["partner", "product", "fee_terms", "effective_from", "effective_to"]
    list_filter = ["partner", "currency"]
    list_select_related = ["partner", "product"]
    search_fields = ["partner__name", "product__name"]
    ordering = ["-created_at"]
    date_hierarchy = "effective_from"

    @admin.display(description="Fees")
    def fee_terms(self, obj: FeeSchedule) -> str:
        """The terms set, in one column (six columns of mostly blanks ran off the screen)."""
        labels = {"cpl": "CPL", "cpa": "CPA", "cpf_rate": "CPF", "cpf_min": "min",
                  "cpf_max": "max", "revshare_rate": "rev share"}  # fmt: skip
        parts = [
            f"{labels[name]} {getattr(obj, name)}"
            for name in FEE_FIELDS
            if getattr(obj, name) is not None
        ]
        return f"{obj.currency} " + ", ".join(parts) if parts else obj.currency

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        # A schedule that priced charges is history: close it and add a new one instead.
        if obj is not None and obj.charges.exists():
            return [f.name for f in FeeSchedule._meta.fields if f.name != "effective_to"]
        return ["version"]

    def save_model(self, request: HttpRequest, obj: FeeSchedule, form: Any, change: bool) -> None:
        if change:
            super().save_model(request, obj, form, change)
            # Routing ranks by the fees in force: the partner's (and a former partner's)
            # fee cards follow the edit (billing.fee_cards).
            for partner_id in {obj.partner_id, getattr(form.initial.get("partner"), "pk", None)}:
                if partner_id is not None:
                    fee_cards.sync_partner(partner_id=partner_id)
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

    def delete_model(self, request: HttpRequest, obj: FeeSchedule) -> None:
        super().delete_model(request, obj)
        fee_cards.sync_partner(partner_id=obj.partner_id)

    def delete_queryset(self, request: HttpRequest, queryset: Any) -> None:
        partner_ids = set(queryset.values_list("partner_id", flat=True))
        super().delete_queryset(request, queryset)
        for partner_id in partner_ids:
            fee_cards.sync_partner(partner_id=partner_id)


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
