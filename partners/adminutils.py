"""Admin helpers shared by every app (partners is the lowest layer)."""

from __future__ import annotations

import uuid
from typing import Any

from django.contrib import admin
from django.contrib.admin.utils import get_fields_from_path
from django.db.models import QuerySet
from django.http import HttpRequest

from partners.models import Partner
from partners.permissions import partner_ids_for_user
from partners.scoping import visible_to


class ReadOnlyAdmin(admin.ModelAdmin):
    """For records that are facts (ledgers, logs, events): view, never add, edit or delete."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class ReadOnlyInline(admin.TabularInline):
    extra = 0
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class PartnerScopedAdminMixin:
    """For any ModelAdmin whose rows carry a partner: partner staff (see
    partners.permissions) see only the partners granted to them, never add or delete, and
    change rows only of partners they manage, and only where ``partner_staff_can_change``.
    Operator staff and superusers are unaffected. Use it first in the bases:
    ``class LeadAdmin(PartnerScopedAdminMixin, ReadOnlyAdmin)``; give any action that
    acts on rows ``allowed_permissions=("change",)`` and scope its queryset with
    ``self.manageable(request, queryset)``."""

    partner_field = "partner"  # lookup path from a row to its Partner ("pk" on Partner)
    partner_staff_can_change = False

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        queryset = super().get_queryset(request)  # type: ignore[misc]
        return visible_to(queryset, request.user, partner=self.partner_field)

    def manageable(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        """The rows of ``queryset`` the user may act on (all of them for operator staff)."""
        if partner_ids_for_user(request.user) is not None and not self.partner_staff_can_change:
            return queryset.none()
        return visible_to(queryset, request.user, partner=self.partner_field, manage=True)

    def partner_id_of(self, obj: Any) -> uuid.UUID:
        *path, last = self.partner_field.split("__")
        for name in path:
            obj = getattr(obj, name)
        partner_id: uuid.UUID = obj.pk if last == "pk" else getattr(obj, f"{last}_id")
        return partner_id

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        allowed: bool = super().has_view_permission(request, obj)  # type: ignore[misc]
        ids = partner_ids_for_user(request.user)
        if ids is None or obj is None or not allowed:
            return allowed
        return self.partner_id_of(obj) in ids

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        ids = partner_ids_for_user(request.user, manage=True)
        if ids is None:
            return bool(super().has_change_permission(request, obj))  # type: ignore[misc]
        if not self.partner_staff_can_change:
            return False
        return bool(ids) if obj is None else self.partner_id_of(obj) in ids

    def has_add_permission(self, request: HttpRequest, *args: Any) -> bool:
        if partner_ids_for_user(request.user) is not None:
            return False
        return bool(super().has_add_permission(request, *args))  # type: ignore[misc]

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        if partner_ids_for_user(request.user) is not None:
            return False
        return bool(super().has_delete_permission(request, obj))  # type: ignore[misc]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        fields = list(super().get_readonly_fields(request, obj))  # type: ignore[misc]
        restricted = partner_ids_for_user(request.user) is not None
        if restricted and self.partner_field == "partner" and "partner" not in fields:
            fields.append("partner")  # partner staff never move a row to another partner
        return fields

    def get_list_filter(self, request: HttpRequest) -> Any:
        """For partner staff, every filter on a relation (partner, product, ...) offers only
        the related rows their own list holds: a plain related filter would name every
        partner on the platform."""
        filters = super().get_list_filter(request)  # type: ignore[misc]
        if partner_ids_for_user(request.user) is None:
            return filters
        return [self._scoped_filter(spec) for spec in filters]

    def _scoped_filter(self, spec: Any) -> Any:
        name, filter_class = spec if isinstance(spec, tuple) else (spec, None)
        if not isinstance(name, str):
            return spec  # a SimpleListFilter: its own lookups
        if filter_class is not None and not issubclass(filter_class, admin.RelatedFieldListFilter):
            return spec
        model = self.model  # type: ignore[attr-defined]
        if not get_fields_from_path(model, name)[-1].is_relation:
            return spec
        return (name, admin.RelatedOnlyFieldListFilter)

    def formfield_for_foreignkey(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        restricted = partner_ids_for_user(request.user) is not None
        if db_field.related_model is Partner and restricted:
            kwargs["queryset"] = visible_to(
                Partner.objects.all(), request.user, partner="pk", manage=True
            )
        return super().formfield_for_foreignkey(db_field, request, **kwargs)  # type: ignore[misc]
