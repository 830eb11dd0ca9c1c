"""Strict number fields for the JSON API: a decimal is a JSON string matching exactly the
pattern the OpenAPI schema publishes for it, an integer is a JSON integer.

DRF's own fields accept whatever Python's ``Decimal()`` and ``int()`` accept: full-width
and other Unicode digits ("８０００"), underscores ("8_000"), exponents ("8e3"), a sign,
surrounding whitespace; ``IntegerField`` also takes 1e2 and 100.0 (floats) and "12". None
of that is what the schema promises, and some of it reached the vault and partners. Here
one pattern string per field is both what the schema states and what the field checks.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

from drf_spectacular.extensions import OpenApiSerializerFieldExtension
from rest_framework import serializers


def decimal_pattern(*, max_digits: int, decimal_places: int, signed: bool) -> str:
    """The regular expression of a decimal string, in the dialect both Python's ``re`` and
    ECMA-262 (OpenAPI's) read alike: ASCII ``[0-9]`` only (``\\d`` is any Unicode digit in
    Python), at least one digit before an optional point, and at least one after it."""
    whole_digits = max_digits - decimal_places
    sign = "-?" if signed else ""
    # No whole digits allowed (e.g. max_digits=4, decimal_places=4): "0.1234" only.
    whole = "0" if whole_digits == 0 else _repeat("[0-9]", whole_digits)
    fraction = rf"(\.{_repeat('[0-9]', decimal_places)})?" if decimal_places else ""
    return rf"^{sign}{whole}{fraction}$"


def _repeat(digit: str, most: int) -> str:
    return digit if most == 1 else f"{digit}{{1,{most}}}"


class StrictDecimalField(serializers.DecimalField):
    """A decimal sent as a string matching ``self.pattern`` (e.g. "8000.00" or "8000");
    JSON numbers are refused too, as floats cannot carry cents exactly. The sign is allowed
    only when ``min_value`` allows a negative value."""

    default_error_messages = {
        "pattern": "Must be a string of ASCII digits with at most {decimal_places} decimal "
        'places, such as "{example}" (no sign, exponent, separators or spaces).',
    }

    def __init__(self, *, max_digits: int, decimal_places: int, **kwargs: Any) -> None:
        super().__init__(max_digits=max_digits, decimal_places=decimal_places, **kwargs)
        signed = self.min_value is None or self.min_value < 0
        self.pattern = decimal_pattern(
            max_digits=max_digits, decimal_places=decimal_places, signed=signed
        )
        self._regex = re.compile(self.pattern)

    def validate_empty_values(self, data: Any) -> tuple[bool, Any]:
        # DRF treats "" and "  " as null when null is allowed; the schema says null is null.
        return serializers.Field.validate_empty_values(self, data)

    def to_internal_value(self, data: Any) -> Decimal:
        # fullmatch, not match: Python's "$" also matches before a trailing newline.
        if not isinstance(data, str) or not self._regex.fullmatch(data):
            example = "8000." + "0" * self.decimal_places if self.decimal_places else "8000"
            self.fail("pattern", decimal_places=self.decimal_places, example=example)
        value: Decimal = super().to_internal_value(data)
        return value


class StrictIntegerField(serializers.IntegerField):
    """An integer sent as a JSON integer: not a float (1e2, 100.0), a string or a boolean."""

    default_error_messages = {"strict": "Must be a JSON integer, such as 12."}

    def to_internal_value(self, data: Any) -> int:
        if not isinstance(data, int) or isinstance(data, bool):
            self.fail("strict")
        value: int = super().to_internal_value(data)
        return value


class StrictDecimalFieldSchema(OpenApiSerializerFieldExtension):
    """Publishes the field's own pattern instead of drf-spectacular's (``\\d{0,N}``, which
    also matches "" and, read by Python, any Unicode digit)."""

    target_class = StrictDecimalField

    def map_serializer_field(self, auto_schema: Any, direction: Any) -> Any:
        schema = auto_schema._map_serializer_field(self.target, direction, bypass_extensions=True)
        schema["pattern"] = self.target.pattern
        return schema
