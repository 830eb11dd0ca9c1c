"""The API's one request parser: JSON in UTF-8 (RFC 8259 §8.1), nothing else.

Django decodes a body in whatever charset its Content-Type names, so a body declared
``charset=latin-1`` was read as Latin-1: a name sent in UTF-8 was stored garbled and
delivered so to partners. A declared charset other than UTF-8 (or one Python does not
know) is refused with 415; bytes that are not UTF-8 are a 400 parse error.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Mapping
from typing import IO, Any

from django.utils.http import parse_header_parameters
from rest_framework import exceptions, status
from rest_framework.parsers import JSONParser

from partners.errors import ApiError

# "\ud800" is valid JSON and valid UTF-8 on the wire, but decodes to a string that no UTF-8
# encoder (the vault, the database, a partner's post) can write back.
_SURROGATE = re.compile("[\ud800-\udfff]")


def _declared_charset(media_type: str | None) -> str | None:
    _, params = parse_header_parameters(media_type or "")
    return params.get("charset")


def _is_utf8(charset: str) -> bool:
    try:
        return codecs.lookup(charset).name == "utf-8"
    except LookupError:
        return False


def _has_surrogate(value: Any) -> bool:
    if isinstance(value, str):
        return _SURROGATE.search(value) is not None
    if isinstance(value, dict):
        return any(_has_surrogate(k) or _has_surrogate(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_surrogate(item) for item in value)
    return False


class Utf8JSONParser(JSONParser):
    def parse(
        self,
        stream: IO[Any],
        media_type: str | None = None,
        parser_context: Mapping[str, Any] | None = None,
    ) -> Any:
        charset = _declared_charset(media_type)
        if charset is not None and not _is_utf8(charset):
            raise ApiError(
                "Request bodies must be UTF-8 JSON.",
                code="unsupported_charset",
                status_code=status.HTTP_415_UNSUPPORTED_MEDIA_TYPE,
                details={"Content-Type": ["Send charset=utf-8, or no charset."]},
            )
        # Decode as UTF-8 whatever Django made of the header.
        data = super().parse(stream, media_type, {**(parser_context or {}), "encoding": "utf-8"})
        if _has_surrogate(data):
            raise exceptions.ParseError("JSON parse error - unpaired surrogate in a string.")
        return data
