"""Refuse oversized request bodies with 413 before anything reads them.

Django enforces ``DATA_UPLOAD_MAX_MEMORY_SIZE`` only when a view first touches the body, and
raises ``RequestDataTooBig`` there: inside a DRF view that became a 500, in the admin a 400.
This middleware looks at the declared ``Content-Length`` first (Django reads no more than
that from a WSGI stream), so an oversized body is never read and always answers 413. The
platform takes no file uploads, so the limit applies to whole bodies.
"""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse

from partners.error_responses import request_too_large


class RequestBodyLimitMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        limit: int | None = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        if limit is not None and _declared_length(request) > limit:
            return request_too_large(request, limit)
        return self.get_response(request)


def _declared_length(request: HttpRequest) -> int:
    # As Django's WSGIRequest: a missing or malformed Content-Length is an empty body.
    try:
        return max(int(request.META.get("CONTENT_LENGTH") or 0), 0)
    except ValueError:
        return 0
