"""Signing in and out, accepting an invitation, picking a partner and a mode, and the
partner's status page."""

from __future__ import annotations

import uuid
from typing import Any

from django.contrib.auth import login
from django.contrib.auth.views import LoginView, LogoutView
from django.db.models import Count, Q
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_http_methods, require_POST

from partners.holds import holds_of
from partners.models import Partner
from portal import access, invitations, selectors
from portal.forms import InvitationAcceptForm
from portal.views.common import show


class PortalLoginView(LoginView):
    """Django's login (django-axes locks out repeated failures, as on the admin's)."""

    template_name = "portal/login.html"
    redirect_authenticated_user = False
    next_page = "portal:home"


class PortalLogoutView(LogoutView):
    next_page = "portal:login"


@require_http_methods(["GET", "POST"])
def pick_partner(request: HttpRequest) -> HttpResponse:
    refused = access.require_partner_staff(request)
    if refused is not None:
        return refused
    ids = access.granted_partner_ids(request.user)
    error = ""
    if request.method == "POST":
        try:
            chosen = uuid.UUID(request.POST.get("partner", ""))
        except ValueError:
            chosen = None
        if chosen is not None and access.pick_partner(request, chosen):
            return redirect("portal:home")
        error = "Pick one of your partners."
    partners = Partner.objects.filter(pk__in=ids).order_by("name")
    return render(
        request,
        "portal/pick_partner.html",
        {"partners": partners, "error": error},
        status=400 if error else 200,
    )


@require_POST
@access.portal_view()
def set_mode(request: HttpRequest) -> HttpResponse:
    mode = request.POST.get("mode")
    if mode in (access.LIVE, access.SANDBOX):
        request.session[access.MODE_KEY] = mode
    return redirect(request.POST.get("next", "") if _safe_next(request) else "portal:home")


def _safe_next(request: HttpRequest) -> bool:
    target = request.POST.get("next", "")
    return target.startswith("/portal/") and "//" not in target


@require_http_methods(["GET"])
@access.portal_view()
def home(request: HttpRequest) -> HttpResponse:
    portal = access.portal_of(request)
    keys = selectors.api_keys(portal).aggregate(
        live=Count("id", filter=Q(mode="live", revoked_at__isnull=True)),
        sandbox=Count("id", filter=Q(mode="sandbox", revoked_at__isnull=True)),
    )
    deletions = selectors.deletion_requests(portal)
    context: dict[str, Any] = {
        "holds": holds_of(partner_id=portal.partner.pk),
        "keys": keys,
        "endpoint": selectors.webhook_endpoints(portal).first(),
        "outstanding_deletions": deletions.filter(acknowledged_at__isnull=True).count(),
        "overdue_deletions": deletions.filter(
            acknowledged_at__isnull=True, due_at__lt=timezone.now()
        ).count(),
        "recent_leads": selectors.leads(portal).order_by("-created_at", "-id")[:5],
    }
    return show(request, "home.html", context)


@require_http_methods(["GET", "POST"])
def accept_invitation(request: HttpRequest, token: str) -> HttpResponse:
    invitation = invitations.open_invitation(token)
    if invitation is None:
        return render(request, "portal/invitation_invalid.html", status=404)
    form = InvitationAcceptForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            user = invitations.accept_invitation(
                token=token,
                username=form.cleaned_data["username"],
                password=form.cleaned_data["password"],
            )
        except invitations.InvitationError as exc:
            if exc.field in form.fields:
                form.add_error(exc.field, str(exc))
            else:
                return render(request, "portal/invitation_invalid.html", status=404)
        else:
            login(request, user, backend="django.contrib.auth.backends.ModelBackend")
            request.session[access.PARTNER_KEY] = str(invitation.partner_id)
            return redirect("portal:home")
    return render(
        request,
        "portal/invitation.html",
        {"invitation": invitation, "form": form},
        status=400 if request.method == "POST" else 200,
    )
