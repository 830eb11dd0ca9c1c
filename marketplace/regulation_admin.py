"""Admin for regulatory rule sets: ops add a new dated version; no version is ever edited or
deleted (registered by ``MarketplaceConfig.ready``)."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.http import HttpRequest

from marketplace import regulation
from marketplace.models.regulation import RuleSet


class RuleSetForm(forms.ModelForm):
    excluded_regions = forms.CharField(
        required=False,
        help_text="ISO 3166-2 codes, comma separated (e.g. CN-XZ, CN-XJ)",
    )

    class Meta:
        model = RuleSet
        fields = [
            "effective_from",
            "all_in_cost_cap",
            "min_age",
            "max_age",
            "excluded_regions",
            "note",
        ]
        help_texts = {
            "all_in_cost_cap": "A fraction: 0.2400 = 24% a year, APR plus every fee",
            "effective_from": "In force from this moment until a later version's start",
        }

    def clean_excluded_regions(self) -> list[str]:
        raw = self.cleaned_data.get("excluded_regions") or ""
        return [part.strip() for part in raw.split(",") if part.strip()]

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        errors = regulation.rule_set_errors(
            all_in_cost_cap=data.get("all_in_cost_cap"),
            min_age=data.get("min_age"),
            max_age=data.get("max_age"),
            excluded_regions=data.get("excluded_regions") or [],
        )
        for field, messages in errors.items():
            for message in messages:
                self.add_error(field, message)
        return data


@admin.register(RuleSet)
class RuleSetAdmin(admin.ModelAdmin):
    form = RuleSetForm
    list_display = ["id", "effective_from", "all_in_cost_cap", "min_age", "max_age", "created_by"]
    readonly_fields = ["created_by", "created_at"]
    ordering = ["-effective_from", "-id"]

    def has_change_permission(self, request: HttpRequest, obj: RuleSet | None = None) -> bool:
        return False  # append-only: the change page is read-only, a change is a new version

    def has_delete_permission(self, request: HttpRequest, obj: RuleSet | None = None) -> bool:
        return False

    def save_model(self, request: HttpRequest, obj: RuleSet, form: Any, change: bool) -> None:
        data = form.cleaned_data
        created = regulation.publish_rule_set(
            effective_from=data["effective_from"],
            all_in_cost_cap=data["all_in_cost_cap"],
            min_age=data["min_age"],
            max_age=data["max_age"],
            excluded_regions=data["excluded_regions"],
            note=data["note"],
            created_by=request.user if request.user.is_authenticated else None,
        )
        obj.pk = created.pk  # the admin's messages and redirect name the new version
