"""One JSON shape for every error of a DRF view: ``{"error": {"code", "message", "details"}}``
(``REST_FRAMEWORK["EXCEPTION_HANDLER"]``). What never reaches a DRF view answers through
``partners.error_responses``, which builds the same shape."""

from __future__ import annotations

import logging
from typing import Any

from django.core.exceptions import PermissionDenied
from django.http import Http404
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler
from rest_framework.views import set_rollback

from partners.error_responses import error_body
from partners.errors import ApiError
from partners.reconnect import connection_lost

logger = logging.getLogger(__name__)


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
    if connection_lost(exc):
        # Not answered here: partners.reconnect.ReconnectMiddleware runs the request again
        # on a new connection, or answers 503 (DRF raises what a handler leaves).
        return None
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
