"""The dashboard page: a custom admin view (/admin/dashboard/, linked from the admin index).

Who sees it: staff with ``marketplace.view_dailyfunnel`` (the ops and finance roles); the
revenue and earnings sections also need ``billing.view_dailyrevenue`` (both roles have it).
Compliance does not: its job is consent records and disclosures, and this page is the
marketplace's commercial performance (no consent or personal data on it either way).
Partner staff never, whatever permissions they were given: the page compares partners.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django import forms
from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import NoReverseMatch, reverse
from django.utils import timezone

from billing.dashboard import selectors
from partners.models import Partner
from partners.permissions import is_partner_staff

FUNNEL_PERMISSION = "marketplace.view_dailyfunnel"
REVENUE_PERMISSION = "billing.view_dailyrevenue"
EXPERIMENT_PERMISSION = "marketplace.view_experiment"
DEFAULT_DAYS = 30
MAX_DAYS = 366


class DashboardFilterForm(forms.Form):
    start = forms.DateField(
        required=False, label="From", widget=forms.DateInput(attrs={"type": "date"})
    )
    end = forms.DateField(
        required=False, label="To", widget=forms.DateInput(attrs={"type": "date"})
    )
    partner = forms.ModelChoiceField(
        queryset=Partner.objects.order_by("name"), required=False, empty_label="All partners"
    )
    channel = forms.CharField(required=False, max_length=40)
    risk_tier = forms.CharField(required=False, max_length=2, label="Risk tier")
    mode = forms.ChoiceField(choices=[("live", "Live"), ("sandbox", "Sandbox")], required=False)
    group = forms.ChoiceField(
        choices=[("partner", "Partner"), ("channel", "Channel"), ("risk_tier", "Risk tier")],
        required=False,
        label="Group by",
    )

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        today = timezone.now().date()
        end = data.get("end") or today
        start = data.get("start") or end - timedelta(days=DEFAULT_DAYS - 1)
        if "start" in self.errors or "end" in self.errors:
            return data
        if start > end:
            self.add_error("start", "The start date is after the end date.")
        elif (end - start).days + 1 > MAX_DAYS:
            self.add_error("start", f"Choose at most {MAX_DAYS} days.")
        data["start"], data["end"] = start, end
        return data

    def filters(self) -> selectors.Filters:
        data = self.cleaned_data
        return selectors.Filters(
            start=data["start"],
            end=data["end"],
            is_sandbox=data.get("mode") == "sandbox",
            partner_id=data["partner"].id if data.get("partner") else None,
            channel=data.get("channel") or "",
            risk_tier=data.get("risk_tier") or "",
            group=data.get("group") or "partner",
        )


def may_view(user: Any) -> bool:
    return bool(
        user.is_active
        and user.is_staff
        and not is_partner_staff(user)
        and user.has_perm(FUNNEL_PERMISSION)
    )


def dashboard(request: HttpRequest) -> HttpResponse:
    if not may_view(request.user):
        raise PermissionDenied("The dashboard is for operator staff (ops and finance).")
    # Always bound: no query string means the defaults (last 30 days, live, by partner).
    form = DashboardFilterForm(request.GET)
    context: dict[str, Any] = {
        **admin.site.each_context(request),
        "title": "Dashboard",
        "form": form,
        "show_revenue": request.user.has_perm(REVENUE_PERMISSION),
    }
    if not form.is_valid():
        # Bad dates or filters: the form with its messages, and nothing computed.
        return TemplateResponse(request, "admin/dashboard.html", context, status=400)
    filters = form.filters()
    totals = selectors.totals(filters)
    context.update(
        filters=filters,
        totals=totals,
        breakdown=selectors.breakdown(filters),
        pings=selectors.ping_health(filters),
        failures=selectors.delivery_failures(filters),
        caps=selectors.cap_usage(today=timezone.now().date(), is_sandbox=filters.is_sandbox),
        chart_data={
            "funnel": selectors.by_day(filters),
            "stages": selectors.STAGES,
        },
    )
    if context["show_revenue"]:
        money = selectors.revenue(filters)
        context["revenue"] = money
        context["chart_data"]["revenue"] = money["daily"]
    if request.user.has_perm(EXPERIMENT_PERMISSION):
        context["experiments"] = selectors.running_experiments()
        context["lab_stages"] = selectors.LAB_STAGES
        try:
            context["experiment_admin"] = reverse("admin:marketplace_experiment_changelist")
        except NoReverseMatch:  # the lab's admin is not registered
            context["experiment_admin"] = ""
    context["chart_data"]["pings"] = context["pings"]
    context["chart_data"]["caps"] = context["caps"]
    return TemplateResponse(request, "admin/dashboard.html", context)
