"""The strategy lab in the admin: strategies, their versions (editing one saves a new
version), experiments with their arms inline and per-arm results, and the promotions log.
Thin: every change goes through ``marketplace.experiments``."""

from __future__ import annotations

import math
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.auth.models import User
from django.db.models import QuerySet
from django.forms import ModelForm
from django.http import HttpRequest, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from marketplace.experiments import lifecycle, strategies
from marketplace.experiments.lifecycle import ExperimentError
from marketplace.experiments.results import STAGES, ArmResult, Results, results
from marketplace.experiments.sequential import Interval
from marketplace.models import (
    Arm,
    Experiment,
    ExperimentStatus,
    Strategy,
    StrategyPromotion,
    StrategyVersion,
)
from partners.admin_fields import short_time
from partners.adminutils import ReadOnlyAdmin, ReadOnlyInline

# Assignment settings: frozen once an experiment has started (its arms are hashed by them).
ASSIGNMENT_FIELDS = ("key", "layer", "layer_share", "coverage", "bucket_version")


class VersionInline(ReadOnlyInline):
    model = StrategyVersion
    fields = readonly_fields = (
        "version",
        "kind",
        "max_partners",
        "explore",
        "return_penalty",
        "params",
        "is_default",
        "note",
        "created_at",
    )


@admin.register(Strategy)
class StrategyAdmin(admin.ModelAdmin):
    list_display = ["key", "name", "latest_version", "default_version"]
    search_fields = ["key", "name"]
    inlines = [VersionInline]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return ["key"] if obj is not None else []  # decisions and arms name it

    def response_add(self, request: HttpRequest, obj: Any, post_url_continue: Any = None) -> Any:
        """A strategy does nothing until it has a version: saving a new one leads straight
        to its first version's form (the list would leave a newcomer wondering what next)."""
        if "_addanother" in request.POST or "_continue" in request.POST:
            return super().response_add(request, obj, post_url_continue)
        self.message_user(request, f"{obj} added: now give it its first version.")
        url = reverse("admin:marketplace_strategyversion_add")
        return HttpResponseRedirect(f"{url}?strategy={obj.pk}")

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description="latest version")
    def latest_version(self, obj: Strategy) -> int | None:
        latest = obj.versions.order_by("-version").first()
        return None if latest is None else latest.version

    @admin.display(description="default", boolean=True)
    def default_version(self, obj: Strategy) -> bool:
        return obj.versions.filter(is_default=True).exists()


class ReasonForm(forms.Form):
    reason = forms.CharField(
        max_length=2000,
        widget=forms.Textarea(attrs={"rows": 3, "cols": 60}),
        help_text="Why: kept with the promotion, your name and the time.",
    )


def _confirm_page(
    model_admin: admin.ModelAdmin,
    request: HttpRequest,
    *,
    obj: Any,
    form: forms.Form,
    action: str,
    title: str,
    warning: str,
    results_html: SafeString | None = None,
) -> TemplateResponse:
    current = strategies.default_version()
    context = {
        **model_admin.admin_site.each_context(request),
        "title": title,
        "warning": warning,
        "subject": str(obj),
        "opts": model_admin.model._meta,
        "form": form,
        "obj": obj,
        "action": action,
        "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
        "current_default": current,
        "results_html": results_html,
    }
    return TemplateResponse(request, "admin/marketplace/lab_confirm.html", context)


def _staff(request: HttpRequest) -> User:
    user = request.user
    assert isinstance(user, User)  # the admin only lets staff users in
    return user


def _one(model_admin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet[Any]) -> Any:
    if queryset.count() != 1:
        model_admin.message_user(request, "Select exactly one.", messages.ERROR)
        return None
    return queryset.get()


@admin.register(StrategyVersion)
class StrategyVersionAdmin(admin.ModelAdmin):
    """Versions are append-only: saving the change form stores a new version with the
    values entered, and the one opened stays as it was."""

    list_display = ["__str__", "kind", "max_partners", "explore", "is_default", "created_at"]
    list_filter = ["kind", "is_default", "strategy"]
    list_select_related = ["strategy"]
    fields = ["strategy", "kind", "max_partners", "explore", "return_penalty", "params", "note"]
    readonly_fields = ["version", "is_default", "created_by", "created_at"]
    actions = ["promote_to_default"]
    help_texts = {
        "kind": "Product settings decide: each product's own exclusive or shared setting. "
        "Shared: the best N by expected value get the lead. Exclusive: only the best. "
        "Waterfall: direct-post partners one after another until one accepts. Ping-post "
        "auction: every ping-post partner is pinged, the best bids win.",
        "max_partners": "N for shared and auctions, the length of a waterfall; empty: the "
        "platform's maximum.",
        "explore": "Rank by sampled conversion rates (Thompson sampling: tries partners "
        "with little history); unticked, by their posterior means.",
        "return_penalty": "How hard a partner's return rate lowers its expected value "
        "(0: ignored; 1: as is).",
        "params": 'Extras for the kind, as JSON, e.g. {"step_timeout_ms": 800}; usually {}.',
        "note": "Why this version exists (shown in the lists).",
    }

    def get_form(
        self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any
    ) -> Any:
        kwargs.setdefault("help_texts", self.help_texts)
        return super().get_form(request, obj, change, **kwargs)

    def get_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        extra = ["version", "is_default", "created_by", "created_at"] if obj else []
        return [*self.fields, *extra]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return [*self.readonly_fields, "strategy"] if obj is not None else self.readonly_fields

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def save_model(self, request: HttpRequest, obj: Any, form: ModelForm, change: bool) -> None:
        data = form.cleaned_data
        created = strategies.create_version(
            strategy=obj.strategy,
            kind=data["kind"],
            max_partners=data.get("max_partners"),
            explore=data.get("explore", True),
            return_penalty=data["return_penalty"],
            params=data.get("params") or {},
            note=data.get("note", ""),
            user=_staff(request),
        )
        # The admin's messages and log then name the new version, not the one opened.
        obj.pk, obj.version = created.pk, created.version

    @admin.action(
        description="Make the default strategy (asks for a reason)", permissions=["change"]
    )
    def promote_to_default(
        self, request: HttpRequest, queryset: QuerySet[StrategyVersion]
    ) -> TemplateResponse | None:
        version = _one(self, request, queryset)
        if version is None:
            return None
        form = ReasonForm(request.POST if "apply" in request.POST else None)
        if "apply" in request.POST and form.is_valid():
            strategies.promote_version(
                version=version,
                user=_staff(request),
                reason=form.cleaned_data["reason"],
            )
            self.log_change(request, version, "Promoted to the default strategy")
            self.message_user(request, f"{version} is the default strategy now.")
            return None
        return _confirm_page(
            self,
            request,
            obj=version,
            form=form,
            action="promote_to_default",
            title="Make the default strategy",
            warning="Every live referral outside a running experiment, and every sandbox "
            "referral, will be routed by this version.",
        )


class ArmInline(admin.TabularInline):
    model = Arm
    extra = 0
    fields = ["key", "is_control", "strategy_version", "weight"]

    def _draft(self, obj: Any) -> bool:
        return obj is None or obj.status == ExperimentStatus.DRAFT

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self._draft(obj) and super().has_add_permission(request, obj)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self._draft(obj) and super().has_change_permission(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self._draft(obj) and super().has_delete_permission(request, obj)


def _pct(value: float) -> str:
    return f"{value:.1%}"


def _interval(interval: Interval | None, *, percent: bool) -> str:
    if interval is None:
        return "–"
    if interval.uninformative or math.isinf(interval.low) or math.isinf(interval.high):
        return "not enough data"
    show = _pct if percent else (lambda v: f"{v:,.2f}")
    marker = " *" if interval.excludes_zero() else ""
    return f"{show(interval.estimate)} [{show(interval.low)}, {show(interval.high)}]{marker}"


def _arm_name(arm: ArmResult) -> str:
    return f"{arm.key}{' (control)' if arm.is_control else ''}"


def _table(heads: tuple[str, ...], rows: list[tuple[str, ...]], caption: str) -> SafeString:
    head = format_html_join("", "<th>{}</th>", ((h,) for h in heads))
    body = format_html_join(
        "",
        "<tr>{}</tr>",
        ((format_html_join("", "<td>{}</td>", ((c,) for c in row)),) for row in rows),
    )
    return format_html(
        '<table class="lab-results"><caption>{}</caption><thead><tr>{}</tr></thead>'
        "<tbody>{}</tbody></table>",
        caption,
        head,
        body,
    )


def results_table(found: Results) -> SafeString:
    """Per-arm results in two tables that fit a 1366 px screen: the funnel (counts and
    rates per stage), then the always-valid intervals (conversion, its lift against
    control, revenue per referral and its lift; a star marks an interval that excludes
    zero); then the sample-ratio check and the stop rule's advice."""
    experiment = found.experiment
    funnel = _table(
        ("arm", "strategy", "weight", "referrals", *STAGES),
        [
            (
                _arm_name(arm),
                arm.strategy,
                f"{arm.weight.normalize():f}",
                str(arm.referrals),
                *(f"{arm.funnel.get(stage, 0)} ({_pct(arm.rate(stage))})" for stage in STAGES),
            )
            for arm in found.arms
        ],
        "Funnel per arm: referrals that reached each stage",
    )
    intervals = _table(
        (
            "arm",
            f"{found.conversion_stage} conversion",
            "lift vs control",
            f"revenue / referral ({experiment.currency})",
            "revenue lift",
        ),
        [
            (
                _arm_name(arm),
                _interval(arm.conversion, percent=True),
                "(control)" if arm.is_control else _interval(arm.conversion_lift, percent=True),
                _interval(arm.revenue_interval, percent=False)
                if arm.revenue is not None
                else "n/a",
                "(control)" if arm.is_control else _interval(arm.revenue_lift, percent=False),
            )
            for arm in found.arms
        ],
        format_html(
            "Estimate [always-valid {}% interval]; * marks a lift whose interval excludes 0",
            f"{100 * (1 - float(experiment.alpha)):g}",
        ),
    )
    ratio = found.ratio
    srm = format_html(
        "Sample ratio: p = {} ({}).",
        f"{ratio.p_value:.3g}",
        "MISMATCH: the split is broken, do not trust these numbers"
        if ratio.mismatch
        else "fine: the arms got the traffic their weights ask for",
    )
    primary = experiment.get_primary_metric_display().lower()
    advice = format_html(
        "Stop rule ({}): {}. Winning arm: {}.",
        primary,
        found.advice.reason if found.advice.stop else "keep running",
        found.winner or "none yet (no lift's interval is above 0)",
    )
    note = format_html(
        "Intervals are {}% always-valid confidence sequences (mixture SPRT): valid however "
        "often this page is looked at.",
        f"{100 * (1 - float(experiment.alpha)):g}",
    )
    return format_html(
        '<div class="lab-results-block">{}{}<p>{}</p><p>{}</p><p>{}</p></div>',
        funnel,
        intervals,
        srm,
        advice,
        note,
    )


class PromoteForm(ReasonForm):
    arm = forms.ModelChoiceField(queryset=Arm.objects.none(), empty_label=None)

    def __init__(self, *args: Any, experiment: Experiment, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["arm"].queryset = experiment.arms.select_related(  # type: ignore[attr-defined]
            "strategy_version__strategy"
        ).order_by("-is_control", "key")
        self.order_fields(["arm", "reason"])


@admin.register(Experiment)
class ExperimentAdmin(admin.ModelAdmin):
    # Within 1366 px beside the filters: layer and bucket version are filters or on the page.
    list_display = ["key", "name", "status", "primary_metric", "started", "stopped"]
    list_filter = ["status", "layer"]
    search_fields = ["key", "name"]
    inlines = [ArmInline]
    actions = ["start", "stop", "restart", "promote"]
    fields = [
        "key",
        "name",
        "hypothesis",
        "layer",
        "layer_share",
        "coverage",
        "bucket_version",
        "primary_metric",
        "max_referrals",
        "alpha",
        "currency",
        "status",
        "namespace_start",
        "namespace_end",
        "started_at",
        "stopped_at",
        "stop_reason",
        "results",
    ]
    base_readonly = [
        "bucket_version",
        "status",
        "namespace_start",
        "namespace_end",
        "started_at",
        "stopped_at",
        "stop_reason",
        "results",
    ]

    # What a newcomer needs to fill the form in (the model's own words are terse).
    help_texts = {
        "key": "Stable id, also the hash seed: keep it once started.",
        "layer": "Experiments of one layer never share an applicant; use another layer to "
        "run one on the same applicants as another.",
        "layer_share": "Share of the layer's applicants this experiment may take (0.001-1).",
        "coverage": "Share of those that enter the experiment (0.001-1); the rest are "
        "routed by the default strategy.",
        "primary_metric": "What the stop rule and the winning arm are judged on.",
        "max_referrals": "The stop rule stops at this many referrals in all arms.",
        "alpha": "Error rate of the intervals: 0.05 gives 95% always-valid intervals.",
        "currency": "Revenue per referral is compared in this currency.",
    }

    def get_form(
        self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any
    ) -> Any:
        kwargs.setdefault("help_texts", self.help_texts)
        return super().get_form(request, obj, change, **kwargs)

    def get_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        if obj is None:  # nothing has run yet: the run's fields would be empty dashes
            return [f for f in self.fields if f not in self.base_readonly]
        return self.fields

    def get_fieldsets(self, request: HttpRequest, obj: Any = None) -> Any:
        """Once started, what ops come for first: the status and the results, then the
        settings it runs with."""
        if obj is None or obj.status == ExperimentStatus.DRAFT:
            return super().get_fieldsets(request, obj)
        run = ["status", "started_at", "stopped_at", "stop_reason"]
        top = ["key", "name", "hypothesis"]
        settings = [f for f in self.fields if f not in (*top, *run, "results")]
        return [
            (None, {"fields": [*top, *run]}),
            # No title of its own: the field's label already says "Results per arm".
            (None, {"fields": ["results"], "classes": ["lab-results-set"]}),
            ("Settings", {"fields": settings}),
        ]

    @admin.display(description="started", ordering="started_at")
    def started(self, obj: Experiment) -> str:
        return short_time(obj.started_at)

    @admin.display(description="stopped", ordering="stopped_at")
    def stopped(self, obj: Experiment) -> str:
        return short_time(obj.stopped_at)

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        if obj is not None and obj.status != ExperimentStatus.DRAFT:
            return [
                *self.base_readonly,
                *ASSIGNMENT_FIELDS,
                "max_referrals",
                "alpha",
                "primary_metric",
                "currency",
            ]
        return self.base_readonly

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        allowed = super().has_delete_permission(request, obj)
        return bool(allowed) and (obj is None or obj.status == ExperimentStatus.DRAFT)

    @admin.display(description="results per arm")
    def results(self, obj: Experiment) -> SafeString | str:
        if obj.pk is None or obj.status == ExperimentStatus.DRAFT:
            return "Not started."
        return results_table(results(obj))

    def _each(
        self, request: HttpRequest, queryset: QuerySet[Experiment], change: Any, done: str
    ) -> None:
        for experiment in queryset:
            try:
                change(experiment)
            except ExperimentError as exc:
                self.message_user(request, f"{experiment.key}: {exc}", messages.ERROR)
            else:
                self.log_change(request, experiment, done)
                self.message_user(request, f"{experiment.key}: {done.lower()}.")

    @admin.action(description="Start (assign live referrals)", permissions=["change"])
    def start(self, request: HttpRequest, queryset: QuerySet[Experiment]) -> None:
        self._each(request, queryset, lambda e: lifecycle.start(experiment_id=e.pk), "Started")

    @admin.action(description="Stop (back to the default strategy)", permissions=["change"])
    def stop(self, request: HttpRequest, queryset: QuerySet[Experiment]) -> None:
        reason = f"stopped in the admin by {request.user.get_username()}"
        self._each(
            request,
            queryset,
            lambda e: lifecycle.stop(experiment_id=e.pk, reason=reason),
            "Stopped",
        )

    @admin.action(description="Restart with a new bucket version", permissions=["change"])
    def restart(self, request: HttpRequest, queryset: QuerySet[Experiment]) -> None:
        self._each(
            request,
            queryset,
            lambda e: lifecycle.restart(experiment_id=e.pk),
            "Restarted with a new bucket version",
        )

    @admin.action(description="Promote an arm to the default strategy", permissions=["change"])
    def promote(
        self, request: HttpRequest, queryset: QuerySet[Experiment]
    ) -> TemplateResponse | None:
        experiment = _one(self, request, queryset)
        if experiment is None:
            return None
        if experiment.status not in (ExperimentStatus.RUNNING, ExperimentStatus.STOPPED):
            self.message_user(
                request,
                f"{experiment.key}: a {experiment.status} experiment cannot be promoted.",
                messages.ERROR,
            )
            return None
        found = results(experiment)
        suggested = experiment.arms.filter(key=found.winner).first() if found.winner else None
        form = PromoteForm(
            request.POST if "apply" in request.POST else None,
            experiment=experiment,
            initial={"arm": suggested},
        )
        if "apply" in request.POST and form.is_valid():
            arm = form.cleaned_data["arm"]
            try:
                lifecycle.promote_arm(
                    experiment_id=experiment.pk,
                    arm_id=arm.pk,
                    user=_staff(request),
                    reason=form.cleaned_data["reason"],
                )
            except ExperimentError as exc:
                self.message_user(request, f"{experiment.key}: {exc}", messages.ERROR)
                return None
            self.log_change(request, experiment, f"Promoted arm {arm.key}")
            self.message_user(
                request, f"{arm.strategy_version} is the default strategy now ({experiment.key})."
            )
            return None
        return _confirm_page(
            self,
            request,
            obj=experiment,
            form=form,
            action="promote",
            title="Promote an arm to the default strategy",
            warning="The arm's strategy version becomes the default for all traffic, and the "
            "experiment ends (promoted).",
            results_html=results_table(found),
        )


@admin.register(StrategyPromotion)
class StrategyPromotionAdmin(ReadOnlyAdmin):
    list_display = ["promoted_at", "strategy_version", "previous", "promoted_by", "experiment"]
    list_select_related = [
        "strategy_version__strategy",
        "previous__strategy",
        "promoted_by",
        "experiment",
    ]
    fields = readonly_fields = (
        "strategy_version",
        "previous",
        "promoted_by",
        "promoted_at",
        "reason",
        "experiment",
        "arm",
    )
