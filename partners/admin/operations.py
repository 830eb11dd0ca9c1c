"""What ops do to a partner from its own page, each with a reason and a history entry
(partners.admin_audit): pause and resume routing (an ops hold, ``HoldReason.OPS_PAUSE``,
through partners.holds) and grant or revoke partner staff access (django-guardian object
permissions, through partners.permissions).
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html_join
from guardian.shortcuts import get_perms, get_users_with_perms, remove_perm

from partners import admin_audit, holds
from partners.models import HoldReason, Partner
from partners.permissions import (
    MANAGE,
    grant_partner_access,
    partner_ids_for_user,
    revoke_partner_access,
)


class ReasonForm(forms.Form):
    reason = forms.CharField(
        min_length=5,
        max_length=200,
        widget=forms.Textarea(attrs={"rows": 3, "cols": 60}),
        help_text="Kept with the hold and in the partner's history (staff only).",
    )


class StaffAccessForm(forms.Form):
    GRANT_VIEW, GRANT_MANAGE, REVOKE = "view", "manage", "revoke"
    user = forms.ModelChoiceField(
        queryset=get_user_model().objects.none(),
        help_text="A staff account; granting makes it partner staff of this partner only.",
    )
    access = forms.ChoiceField(
        choices=[
            (GRANT_VIEW, "Grant: see this partner's rows"),
            (GRANT_MANAGE, "Grant: also manage (contacts, keys, replays, secrets)"),
            (REVOKE, "Revoke all access to this partner"),
        ],
        widget=forms.RadioSelect,
        initial=GRANT_VIEW,
    )
    reason = forms.CharField(min_length=5, max_length=200)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Operator staff and superusers are never made partner staff by mistake.
        self.fields["user"].queryset = (  # type: ignore[attr-defined]
            get_user_model()
            .objects.filter(is_active=True, is_superuser=False)
            .exclude(groups__name__in=["ops", "finance", "compliance"])
            .order_by("username")
        )


def _is_operator(request: HttpRequest, model_admin: Any, obj: Any = None) -> bool:
    return partner_ids_for_user(request.user) is None and bool(
        model_admin.has_change_permission(request, obj)
    )


class PartnerOperationsMixin:
    """For the Partner ModelAdmin: the pause, resume and staff access pages, linked from
    the partner's page (``operations`` read-only field)."""

    def get_urls(self) -> list[Any]:
        view = self.admin_site.admin_view  # type: ignore[attr-defined]
        return [
            path("<uuid:pk>/pause/", view(self.pause_view), name="partners_partner_pause"),
            path("<uuid:pk>/resume/", view(self.resume_view), name="partners_partner_resume"),
            path("<uuid:pk>/staff/", view(self.staff_view), name="partners_partner_staff"),
            *super().get_urls(),  # type: ignore[misc]
        ]

    @admin.display(description="Operations")
    def operations(self, obj: Partner) -> str:
        if obj is None or obj.pk is None:
            return "-"
        paused = holds.is_held(partner_id=obj.pk, reason=HoldReason.OPS_PAUSE)
        toggle = "resume" if paused else "pause"
        links = [
            (
                reverse(f"admin:partners_partner_{toggle}", args=[obj.pk]),
                f"{toggle.capitalize()} routing",
            ),
            (reverse("admin:partners_partner_staff", args=[obj.pk]), "Partner staff access"),
        ]
        return format_html_join(" · ", '<a class="ops-link" href="{}">{}</a>', links)

    def _partner(self, request: HttpRequest, pk: Any) -> Partner:
        partner: Partner = get_object_or_404(self.get_queryset(request), pk=pk)  # type: ignore[attr-defined]
        if not _is_operator(request, self, partner):
            raise PermissionDenied
        return partner

    def _page(self, request: HttpRequest, partner: Partner, **context: Any) -> HttpResponse:
        return TemplateResponse(
            request,
            "admin/ops/form.html",
            {
                **self.admin_site.each_context(request),  # type: ignore[attr-defined]
                "opts": Partner._meta,
                "original": partner,
                **context,
            },
        )

    def pause_view(self, request: HttpRequest, pk: Any) -> HttpResponse:
        partner = self._partner(request, pk)
        form = ReasonForm(request.POST if request.method == "POST" else None)
        if request.method == "POST" and form.is_valid():
            reason = form.cleaned_data["reason"]
            placed = holds.place_hold(
                partner_id=partner.pk,
                reason=HoldReason.OPS_PAUSE,
                note=reason,
                created_by=request.user,
            )
            if placed:
                admin_audit.record(
                    request,
                    partner,
                    "Paused routing (ops hold)",
                    changes={"routing": ("running", "paused by ops")},
                    reason=reason,
                )
                self.message_user(  # type: ignore[attr-defined]
                    request, f"Routing to {partner} is paused. No new leads go to it.",
                    messages.SUCCESS,
                )  # fmt: skip
            else:
                self.message_user(  # type: ignore[attr-defined]
                    request, f"{partner} was already paused by ops.", messages.WARNING
                )
            return redirect("admin:partners_partner_change", partner.pk)
        return self._page(
            request,
            partner,
            title=f"Pause routing to {partner}",
            intro="No referral is routed to any product of this partner until ops resume it. "
            "Its status and billing holds are not changed.",
            facts=[
                ("Status", partner.get_status_display()),
                ("Holds in force", _holds_text(partner)),
            ],
            form=form,
            submit_label="Pause routing",
        )

    def resume_view(self, request: HttpRequest, pk: Any) -> HttpResponse:
        partner = self._partner(request, pk)
        form = ReasonForm(request.POST if request.method == "POST" else None)
        if request.method == "POST" and form.is_valid():
            reason = form.cleaned_data["reason"]
            if holds.lift_hold(
                partner_id=partner.pk, reason=HoldReason.OPS_PAUSE, lifted_by=request.user
            ):
                admin_audit.record(
                    request,
                    partner,
                    "Resumed routing (ops hold lifted)",
                    changes={"routing": ("paused by ops", "running")},
                    reason=reason,
                )
                left = _holds_text(partner)
                self.message_user(  # type: ignore[attr-defined]
                    request,
                    f"Routing to {partner} resumed."
                    + (f" Still held by: {left}." if left != "None" else ""),
                    messages.SUCCESS,
                )
            else:
                self.message_user(  # type: ignore[attr-defined]
                    request, f"{partner} was not paused by ops.", messages.WARNING
                )
            return redirect("admin:partners_partner_change", partner.pk)
        return self._page(
            request,
            partner,
            title=f"Resume routing to {partner}",
            intro="Lifts the ops hold only: a credit-limit or budget hold stays until billing "
            "lifts it.",
            facts=[("Holds in force", _holds_text(partner))],
            form=form,
            submit_label="Resume routing",
        )

    def staff_view(self, request: HttpRequest, pk: Any) -> HttpResponse:
        partner = self._partner(request, pk)
        form = StaffAccessForm(request.POST if request.method == "POST" else None)
        if request.method == "POST" and form.is_valid():
            user, access = form.cleaned_data["user"], form.cleaned_data["access"]
            before = _access_of(user, partner)
            if access == StaffAccessForm.REVOKE:
                revoke_partner_access(user=user, partner=partner)
            else:
                grant_partner_access(
                    user=user, partner=partner, manage=access == StaffAccessForm.GRANT_MANAGE
                )
                if access == StaffAccessForm.GRANT_VIEW and before == "manage":
                    # Granting "view" to a manager narrows them to view.
                    remove_perm(MANAGE, user, partner)
            after = _access_of(user, partner)
            admin_audit.record(
                request,
                partner,
                f"Partner staff access of {user.get_username()}",
                changes={"access": (before, after)},
                reason=form.cleaned_data["reason"],
            )
            self.message_user(  # type: ignore[attr-defined]
                request,
                f"{user.get_username()}: access to {partner} {before} → {after}.",
                messages.SUCCESS,
            )
            return redirect("admin:partners_partner_staff", partner.pk)
        users = get_users_with_perms(partner, with_superusers=False, with_group_users=False)
        rows = [
            (u.get_username(), _access_of(u, partner))
            for u in sorted(users, key=lambda u: u.get_username())
        ]
        return self._page(
            request,
            partner,
            title=f"Partner staff of {partner}",
            intro="Partner staff see only this partner's rows in the admin and the portal.",
            rows=rows or [("nobody yet", "")],
            row_headings=["User", "Access"],
            form=form,
            submit_label="Save access",
        )


def _access_of(user: Any, partner: Partner) -> str:
    perms = set(get_perms(user, partner))
    if "change_partner" in perms:
        return "manage"
    return "view" if "view_partner" in perms else "none"


def _holds_text(partner: Partner) -> str:
    rows = holds.holds_of(partner_id=partner.pk)
    return ", ".join(HoldReason(row.reason).label for row in rows) or "None"
