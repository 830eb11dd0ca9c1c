"""The API's one request parser: JSON in UTF-8 (RFC 8259 §8.1), nothing else.

Django decodes a body in whatever charset its Content-Type names, so a body declared
``charset=latin-1`` was read as Latin-1: a name sent in UTF-8 was stored garbled and
delivered so to partners. A declared charset other than UTF-8 (or one Python does not
know) is refused with 415; bytes that are not UTF-8 are a 400 parse error.

Nesting is bounded: no request of this API goes more than a few levels deep, and a document
nested a thousand levels made ``json`` raise ``RecursionError`` (a 500). Anything deeper
than ``MAX_JSON_DEPTH`` is a 400 parse error, checked without recursion.
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


MAX_JSON_DEPTH = 32


def _check_document(data: Any) -> None:
    """Walks the parsed document with an explicit stack: depth and unpaired surrogates."""
    stack: list[tuple[Any, int]] = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, str):
            if _SURROGATE.search(value) is not None:
                raise exceptions.ParseError("JSON parse error - unpaired surrogate in a string.")
        elif isinstance(value, dict | list):
            if depth > MAX_JSON_DEPTH:
                raise _too_deep()
            items = value.items() if isinstance(value, dict) else enumerate(value)
            for key, item in items:
                stack.append((key, depth))
                stack.append((item, depth + 1))


def _too_deep() -> exceptions.ParseError:
    return exceptions.ParseError(f"JSON parse error - nested deeper than {MAX_JSON_DEPTH} levels.")


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
        context = {**(parser_context or {}), "encoding": "utf-8"}
        try:
            data = super().parse(stream, media_type, context)
        except RecursionError:
            raise _too_deep() from None
        _check_document(data)
        return data
