"""The operator invites partner staff to the portal and revokes their access.

Adding an invitation makes it through ``portal.invitations.issue_invitation`` and shows its
link once, on the page answering the add (never stored, never in a message cookie); the
list shows no names or addresses. The "revoke" action closes open invitations and takes
the partner away from accounts made with used ones. The log of what partner staff did in
the portal is read-only."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import reverse

from partners.adminutils import PartnerScopedAdminMixin, ReadOnlyAdmin
from portal import invitations
from portal.models import PartnerInvitation, PortalAction

_LINK_ATTR = "_portal_invitation_link"
ADD_FIELDS = ["partner", "name", "email", "manage"]


@admin.register(PartnerInvitation)
class PartnerInvitationAdmin(PartnerScopedAdminMixin, admin.ModelAdmin):
    list_display = ["partner", "status", "manage", "created_at", "expires_at", "used_at"]
    list_filter = ["partner", "manage"]
    date_hierarchy = "created_at"
    ordering = ["-created_at"]
    actions = ["revoke"]
    readonly_fields_when_made = [
        "partner",
        "name",
        "email",
        "manage",
        "status",
        "created_by",
        "created_at",
        "expires_at",
        "used_at",
        "user",
        "revoked_at",
    ]

    @admin.display(description="Status")
    def status(self, obj: PartnerInvitation) -> str:
        return invitations.status_of(obj)

    def get_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return list(self.readonly_fields_when_made) if obj is not None else list(ADD_FIELDS)

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        # An invitation is a fact once made: revoke it, never edit it.
        return list(self.readonly_fields_when_made) if obj is not None else []

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        if change:
            return  # every field is read-only once made
        issued = invitations.issue_invitation(
            partner=obj.partner,
            name=obj.name,
            email=obj.email,
            manage=obj.manage,
            created_by=request.user,
        )
        made = issued.invitation
        # The admin logs and answers with ``obj``: make it the row just created.
        for field in PartnerInvitation._meta.concrete_fields:
            setattr(obj, field.attname, getattr(made, field.attname))
        obj._state.adding = False
        obj._state.db = made._state.db
        setattr(request, _LINK_ATTR, issued.token)

    def response_add(
        self, request: HttpRequest, obj: Any, post_url_continue: str | None = None
    ) -> HttpResponse:
        token = getattr(request, _LINK_ATTR, None)
        if token is None:
            return super().response_add(request, obj, post_url_continue)
        link = request.build_absolute_uri(reverse("portal:invite", args=[token]))
        context = {
            **self.admin_site.each_context(request),
            "title": "Invitation created",
            "opts": self.model._meta,
            "invitation": obj,
            "link": link,
        }
        return TemplateResponse(request, "portal/admin/invitation_created.html", context)

    @admin.action(
        description="Revoke (close the invitation, take the partner away)", permissions=["change"]
    )
    def revoke(self, request: HttpRequest, queryset: QuerySet[PartnerInvitation]) -> None:
        done = 0
        for invitation in self.manageable(request, queryset):
            done += invitations.revoke_invitation(invitation_id=invitation.pk)
        self.message_user(request, f"Revoked {done} invitation(s).", messages.SUCCESS)


@admin.register(PortalAction)
class PortalActionAdmin(PartnerScopedAdminMixin, ReadOnlyAdmin):
    list_display = ["at", "partner", "kind", "target", "is_sandbox", "user"]
    list_filter = ["kind", "is_sandbox", "partner"]
    date_hierarchy = "at"
    ordering = ["-at", "-id"]
