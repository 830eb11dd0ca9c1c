"""Query parameters that answer 400 with a per-field message for any value, never a 500.

Hostile values that used to reach the database: a date/time whose offset moves it past year
9999 or before year 1 in UTC (``9999-12-31T23:59:59-23:59``) overflowed when converted; a
"positive integer" of Unicode digits (``²``) passed ``str.isdigit`` and broke ``int``; one
past 2**63 - 1 overflowed the database's integer. Every API filter and parameter of these
kinds goes through the helpers here.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from django import forms
from django.core.exceptions import ValidationError
from django_filters import rest_framework as filters
from django_filters.fields import IsoDateTimeField
from rest_framework.request import Request

from partners.errors import ApiError

# The largest value a database bigint (PostgreSQL and SQLite alike) holds.
MAX_BIGINT = 2**63 - 1

_OUT_OF_RANGE = "Enter a date/time between 0001-01-01 and 9999-12-31 in UTC."


class UtcDateTimeField(IsoDateTimeField):
    """An ISO 8601 date/time, returned in UTC; one that leaves the years 1-9999 once in UTC
    is invalid (a naive one is UTC already: ``TIME_ZONE`` is UTC)."""

    default_error_messages = {"out_of_range": _OUT_OF_RANGE}

    def to_python(self, value: Any) -> datetime | None:
        try:
            parsed = super().to_python(value)
        except OverflowError:
            raise ValidationError(
                self.error_messages["out_of_range"], code="out_of_range"
            ) from None
        if parsed is None:
            return None
        try:
            return parsed.astimezone(UTC)
        except OverflowError:
            raise ValidationError(
                self.error_messages["out_of_range"], code="out_of_range"
            ) from None


class UtcDateTimeFilter(filters.IsoDateTimeFilter):
    """``IsoDateTimeFilter`` over ``UtcDateTimeField``: every API date/time filter."""

    field_class: type[forms.Field] = UtcDateTimeField


def positive_int_param(request: Request, name: str, *, required: bool) -> int | None:
    """``name`` from the query string as an integer in 1..2**63-1 (ASCII digits only), or
    None when absent and not required; anything else is a 400 naming the parameter."""
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        if required:
            raise ApiError(
                f"{name} is required", code="validation_error", details={name: ["required"]}
            )
        return None
    if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= MAX_BIGINT:
        raise ApiError(
            f"{name} must be a positive integer (at most {MAX_BIGINT})",
            code="validation_error",
            details={name: ["must be a positive integer"]},
        )
    return int(raw)
