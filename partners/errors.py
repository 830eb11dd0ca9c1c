"""The API's domain error: ``ApiError`` carries a stable code, a message and per-field
details; ``partners.exception_handler`` turns it (and every other error of a DRF view) into
the one JSON shape, ``partners.error_responses`` builds that shape outside DRF views.

This module imports nothing of DRF's views: DRF's view module loads the API's parser
(``partners.parsers``), which raises ``ApiError``; importing the views here made a cycle
that broke any process (a Celery worker's system checks) that loaded this module first.
"""

from __future__ import annotations

from rest_framework import exceptions, status


class ApiError(exceptions.APIException):
    """A domain error with a stable code, raised by services (partners.exception_handler
    turns it into the JSON shape)."""

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
