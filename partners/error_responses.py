"""The API's error shape for answers given outside DRF views, in plain Django.

An unknown path under ``/api/``, a body refused before any view reads it, a crash outside a
view: each answers ``{"error": {"code", "message", "details"}}`` as DRF views do (through
``partners.exception_handler``). This module imports nothing of DRF's views: the middleware loads it
before any view, and DRF's view module loads the API's parser, which loads ``partners.errors``.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponsePermanentRedirect, JsonResponse
from django.urls import Resolver404, resolve
from django.views import defaults


def error_body(code: str, message: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": details or {}}}


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
        error_body("not_found", "No API endpoint at this path."), status=HTTPStatus.NOT_FOUND
    )


def request_too_large(request: HttpRequest, limit: int) -> HttpResponse:
    """413 for a body over ``limit`` bytes: the error shape under ``/api/``, text elsewhere."""
    message = f"Request bodies are limited to {limit} bytes."
    if is_api_request(request):
        return JsonResponse(
            error_body("request_too_large", message),
            status=HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
        )
    return HttpResponse(
        message, status=HTTPStatus.REQUEST_ENTITY_TOO_LARGE, content_type="text/plain"
    )


def server_error(request: HttpRequest) -> HttpResponse:
    """``handler500``: a crash outside a DRF view (middleware, URL resolving) under ``/api/``
    still answers in the error shape; the admin keeps Django's page."""
    if is_api_request(request):
        return JsonResponse(
            error_body("server_error", "An unexpected error occurred."),
            status=HTTPStatus.INTERNAL_SERVER_ERROR,
        )
    return defaults.server_error(request)
