"""Set-valued JSON columns (risk tiers, regions, purposes, channels, employment types)
edited in the admin as checkboxes instead of raw JSON.

A product stores each as a JSON list; an empty list means "any" where the column allows
it. The form field offers a fixed vocabulary plus whatever the row already holds, so a
value entered through the API outside the vocabulary is shown and kept rather than
silently dropped on the next save.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import UTC
from typing import Any

from django import forms

from partners.models import EMPLOYMENT_TYPES, RISK_TIERS

# ISO 3166-2 codes of the mainland provinces, regions and municipalities (and HK, MO, TW).
CN_REGIONS = [
    ("CN-AH", "Anhui"), ("CN-BJ", "Beijing"), ("CN-CQ", "Chongqing"), ("CN-FJ", "Fujian"),
    ("CN-GD", "Guangdong"), ("CN-GS", "Gansu"), ("CN-GX", "Guangxi"), ("CN-GZ", "Guizhou"),
    ("CN-HA", "Henan"), ("CN-HB", "Hubei"), ("CN-HE", "Hebei"), ("CN-HI", "Hainan"),
    ("CN-HK", "Hong Kong"), ("CN-HL", "Heilongjiang"), ("CN-HN", "Hunan"), ("CN-JL", "Jilin"),
    ("CN-JS", "Jiangsu"), ("CN-JX", "Jiangxi"), ("CN-LN", "Liaoning"), ("CN-MO", "Macao"),
    ("CN-NM", "Inner Mongolia"), ("CN-NX", "Ningxia"), ("CN-QH", "Qinghai"),
    ("CN-SC", "Sichuan"), ("CN-SD", "Shandong"), ("CN-SH", "Shanghai"), ("CN-SN", "Shaanxi"),
    ("CN-SX", "Shanxi"), ("CN-TJ", "Tianjin"), ("CN-TW", "Taiwan"), ("CN-XJ", "Xinjiang"),
    ("CN-XZ", "Tibet"), ("CN-YN", "Yunnan"), ("CN-ZJ", "Zhejiang"),
]  # fmt: skip
PURPOSES = [
    "consumption", "education", "medical", "business", "home_improvement", "car",
    "travel", "wedding", "debt_consolidation", "other",
]  # fmt: skip
CHANNELS = ["app", "web", "mini_program", "h5", "call_centre", "partner_api"]


def _labelled(values: Iterable[str]) -> list[tuple[str, str]]:
    return [(value, value.replace("_", " ")) for value in values]


class ChoiceSetField(forms.TypedMultipleChoiceField):
    """A JSON list of distinct strings from a vocabulary, as checkboxes. ``required``
    means "at least one"; the cleaned value is a list in the vocabulary's order."""

    widget = forms.CheckboxSelectMultiple

    def __init__(self, *, choices: Sequence[tuple[str, str]], **kwargs: Any) -> None:
        kwargs.setdefault("coerce", str)
        kwargs.setdefault("empty_value", [])
        kwargs.pop("max_length", None)  # passed by a JSONField's formfield()
        kwargs.pop("encoder", None)
        kwargs.pop("decoder", None)
        super().__init__(choices=choices, **kwargs)
        self.widget.attrs.setdefault("class", "choice-set")

    def keep_values(self, values: Iterable[Any]) -> None:
        """Offer the row's current values too, when outside the vocabulary."""
        known = {str(value) for value, _ in self.choices}  # type: ignore[misc, union-attr]
        extra = [(str(v), f"{v} (not in the list)") for v in values or [] if str(v) not in known]
        if extra:
            self.choices = [*self.choices, *extra]  # type: ignore[misc]

    def prepare_value(self, value: Any) -> Any:
        if isinstance(value, str):  # a JSON string from an unbound ModelForm's initial
            try:
                value = json.loads(value)
            except ValueError:
                return [value]
        return value

    def clean(self, value: Any) -> list[str]:
        chosen = set(super().clean(value) or [])
        # The vocabulary's order, so a save without a change stores the same list.
        return [str(v) for v, _ in self.choices if str(v) in chosen]  # type: ignore[misc, union-attr]

    def has_changed(self, initial: Any, data: Any) -> bool:
        before = set(self.prepare_value(initial) or [])
        return before != set(data or [])


# The product columns and their vocabularies: (choices, at least one required).
PRODUCT_SET_FIELDS: dict[str, tuple[list[tuple[str, str]], bool]] = {
    "risk_tiers": ([(t, t) for t in RISK_TIERS], True),
    "regions": (CN_REGIONS, False),
    "excluded_regions": (CN_REGIONS, False),
    "employment_types": (_labelled(EMPLOYMENT_TYPES), False),
    "purposes": (_labelled(PURPOSES), False),
    "channels": (_labelled(CHANNELS), False),
}


class ChoiceSetAdminMixin:
    """Edit the JSON list columns named in ``choice_set_fields`` as checkboxes."""

    choice_set_fields: dict[str, tuple[list[tuple[str, str]], bool]] = PRODUCT_SET_FIELDS

    def formfield_for_dbfield(self, db_field: Any, request: Any, **kwargs: Any) -> Any:
        spec = self.choice_set_fields.get(db_field.name)
        if spec is None:
            return super().formfield_for_dbfield(db_field, request, **kwargs)  # type: ignore[misc]
        choices, required = spec
        return ChoiceSetField(
            choices=choices,
            required=required,
            label=db_field.verbose_name.capitalize(),
            help_text="" if required else "None ticked: any.",
        )

    def get_form(self, request: Any, obj: Any = None, change: bool = False, **kwargs: Any) -> Any:
        form = super().get_form(request, obj, change, **kwargs)  # type: ignore[misc]
        if obj is None:
            return form

        class WithCurrentValues(form):  # type: ignore[misc, valid-type]
            def __init__(self, *args: Any, **kw: Any) -> None:
                super().__init__(*args, **kw)
                for name, field in self.fields.items():
                    if isinstance(field, ChoiceSetField):
                        field.keep_values(getattr(self.instance, name, None) or [])

        return WithCurrentValues


def short_time(value: Any) -> str:
    """A list column's time in UTC, ``2026-12-01 18:05``: Django's "Dec. 1, 2026, 6:05 p.m."
    is twice as wide, and lists must fit 1366 px."""
    if value is None:
        return "-"
    return f"{value.astimezone(UTC):%Y-%m-%d %H:%M}"
