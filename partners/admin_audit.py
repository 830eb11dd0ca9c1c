"""The admin's audit trail: who did what to which row, when, with the old and new values
and the reason, kept as Django's LogEntry (shown on the row's History page).

Django's own change message says only "Changed Status."; operators need to know from
what to what, and why. :func:`record` writes one entry for an action or a form save;
:class:`ValueChangeMessageMixin` makes every change form's entry list old -> new values.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.contrib.admin.models import ADDITION, CHANGE, LogEntry
from django.contrib.contenttypes.models import ContentType
from django.db import models
from django.http import HttpRequest

MAX_VALUE = 120  # a long JSON value is cut in the history, not in the row


def _show(value: Any) -> str:
    if value is None or value == "":
        return "(empty)"
    if isinstance(value, models.Model):
        value = str(value)
    text = str(value)
    return text if len(text) <= MAX_VALUE else text[: MAX_VALUE - 1] + "…"


def describe(
    action: str, *, changes: Mapping[str, tuple[Any, Any]] | None = None, reason: str = ""
) -> str:
    """``Paused routing: status: live -> paused. Reason: ...`` (one line)."""
    parts = [action]
    if changes:
        parts.append(
            "; ".join(
                f"{name}: {_show(old)} → {_show(new)}" for name, (old, new) in changes.items()
            )
        )
    if reason:
        parts.append(f"Reason: {reason}")
    return ". ".join(parts)


def record(
    actor: HttpRequest | Any,
    obj: models.Model,
    action: str,
    *,
    changes: Mapping[str, tuple[Any, Any]] | None = None,
    reason: str = "",
    added: bool = False,
) -> LogEntry:
    """One history entry on ``obj`` by ``actor`` (a request's user, or a user for work a
    worker does on someone's behalf); the time is the entry's."""
    user = actor.user if isinstance(actor, HttpRequest) else actor
    entry: LogEntry = LogEntry.objects.create(
        user_id=user.pk,  # type: ignore[misc]  # a signed-in user always has one
        content_type=ContentType.objects.get_for_model(obj, for_concrete_model=False),
        object_id=str(obj.pk),
        object_repr=str(obj)[:200],
        action_flag=ADDITION if added else CHANGE,
        change_message=describe(action, changes=changes, reason=reason),
    )
    return entry


def history(obj: models.Model) -> list[str]:
    """The change messages of ``obj``, oldest first (for tests and pages)."""
    entries = LogEntry.objects.filter(
        content_type=ContentType.objects.get_for_model(obj, for_concrete_model=False),
        object_id=str(obj.pk),
    ).order_by("action_time", "pk")
    return [entry.change_message for entry in entries]


class ValueChangeMessageMixin:
    """A ModelAdmin mixin: the change form's history entry names each changed field with
    its old and new value (and each inline row added, changed or deleted)."""

    def construct_change_message(
        self, request: HttpRequest, form: Any, formsets: Any, add: bool = False
    ) -> Any:
        if add or not form.changed_data:
            return super().construct_change_message(  # type: ignore[misc]
                request, form, formsets, add
            )
        changes = {
            str(form.fields[name].label or name): (
                form.initial.get(name),
                form.cleaned_data.get(name),
            )
            for name in form.changed_data
            if name in form.fields
        }
        inline_parts = []
        for formset in formsets or []:
            for added_obj in getattr(formset, "new_objects", []):
                inline_parts.append(f"added {added_obj._meta.verbose_name} {added_obj}")
            for changed_obj, fields in getattr(formset, "changed_objects", []):
                inline_parts.append(f"changed {', '.join(fields)} of {changed_obj}")
            for deleted_obj in getattr(formset, "deleted_objects", []):
                inline_parts.append(f"deleted {deleted_obj._meta.verbose_name} {deleted_obj}")
        message = describe("Changed", changes=changes)
        return f"{message}. {'; '.join(inline_parts)}" if inline_parts else message
