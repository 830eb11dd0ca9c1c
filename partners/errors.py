"""One JSON shape for every API error: ``{"error": {"code", "message", "details"}}``.

DRF views answer through ``exception_handler``; what never reaches a DRF view under
``/api/`` (an unknown path, a body refused before any view, a crash outside a view) answers
through ``api_not_found``, ``request_too_large`` and ``server_error`` in the same shape.
"""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponsePermanentRedirect,
    JsonResponse,
)
from django.urls import Resolver404, resolve
from django.views import defaults
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler
from rest_framework.views import set_rollback

logger = logging.getLogger(__name__)


class ApiError(exceptions.APIException):
    """A domain error with a stable code, raised by services and turned into JSON here."""

    def __init__(
        self,
        message: str,
        *,
        code: str = "invalid",
        status_code: int = status.HTTP_400_BAD_REQUEST,
        details: dict[str, list[str]] | None = None,
        retry_after: int | None = None,
    ) -> None:
        super().__init__(detail=message, code=code)
        self.status_code = status_code
        self.error_code = code
        self.details = details or {}
        # Seconds; DRF's handler turns ``wait`` into a Retry-After header.
        self.wait = retry_after


def error_body(code: str, message: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": details or {}}}


def _flatten(detail: Any, prefix: str = "") -> dict[str, list[str]]:
    """DRF's nested error dicts as ``{"applicant.phone": ["..."]}``."""
    out: dict[str, list[str]] = {}
    if isinstance(detail, dict):
        for key, value in detail.items():
            name = f"{prefix}.{key}" if prefix else str(key)
            out.update(_flatten(value, name))
    elif isinstance(detail, list):
        if all(not isinstance(item, dict | list) for item in detail):
            out[prefix or "non_field_errors"] = [str(item) for item in detail]
        else:
            for index, item in enumerate(detail):
                out.update(_flatten(item, f"{prefix}[{index}]"))
    else:
        out[prefix or "non_field_errors"] = [str(detail)]
    return out


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied()
    response = drf_exception_handler(exc, context)
    if response is None:
        # Unexpected: log it (our exceptions carry ids, never personal data) and answer in
        # the one error shape instead of an HTML page.
        logger.exception("unhandled error in %s", type(context.get("view")).__name__)
        set_rollback()
        return Response(
            error_body("server_error", "An unexpected error occurred; nothing was applied."),
            status=status.HTTP_500_INTERNAL_SERVER_ERROR,
        )
    if isinstance(exc, ApiError):
        response.data = error_body(exc.error_code, str(exc.detail), exc.details)
    elif isinstance(exc, exceptions.ValidationError):
        response.data = error_body(
            "validation_error", "The request has invalid fields.", _flatten(exc.detail)
        )
    elif isinstance(exc, exceptions.APIException):
        codes = exc.get_codes()
        code = codes if isinstance(codes, str) else "error"
        response.data = error_body(code, str(exc.detail))
    return response


API_PREFIX = "/api/"


def is_api_request(request: HttpRequest) -> bool:
    return request.path_info.startswith(API_PREFIX) or request.path_info == API_PREFIX[:-1]


def api_not_found(request: HttpRequest) -> HttpResponse:
    """The URLconf's last ``/api/`` route: a path no endpoint serves is a JSON 404.

    Being a route, it also answers so with DEBUG on; it keeps APPEND_SLASH's redirect for
    the routes that end in a slash (``/api/docs`` goes to ``/api/docs/``)."""
    if settings.APPEND_SLASH and not request.path_info.endswith("/"):
        try:
            match = resolve(request.path_info + "/")
        except Resolver404:
            match = None
        if match is not None and match.func is not api_not_found:
            return HttpResponsePermanentRedirect(request.get_full_path(force_append_slash=True))
    return JsonResponse(
        error_body("not_found", "No API endpoint at this path."), status=status.HTTP_404_NOT_FOUND
    )


def request_too_large(request: HttpRequest, limit: int) -> HttpResponse:
    """413 for a body over ``limit`` bytes: the error shape under ``/api/``, text elsewhere."""
    message = f"Request bodies are limited to {limit} bytes."
    if is_api_request(request):
        return JsonResponse(
            error_body("request_too_large", message),
            status=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
        )
    return HttpResponse(
        message, status=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE, content_type="text/plain"
    )


def server_error(request: HttpRequest) -> HttpResponse:
    """``handler500``: a crash outside a DRF view (middleware, URL resolving) under ``/api/``
    still answers in the error shape; the admin keeps Django's page."""
    if is_api_request(request):
        return JsonResponse(
            error_body("server_error", "An unexpected error occurred."),
            status=status.HTTP_500_INTERNAL_SERVER_ERROR,
        )
    return defaults.server_error(request)
