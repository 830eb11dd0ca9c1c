"""``Idempotency-Key`` for creating POSTs: same key and body replays the first response,
same key with another body is 422, a request still running is 409."""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable
from typing import Any, TypeVar

from django.db import IntegrityError, transaction
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response

from partners.authentication import client
from partners.errors import ApiError
from partners.models import IdempotencyRecord

MAX_KEY_LENGTH = 200
View = TypeVar("View")


def _fingerprint(request: Request) -> str:
    digest = hashlib.sha256()
    digest.update(request.method.encode() if request.method else b"")
    digest.update(b"\0" + request.path.encode() + b"\0")
    digest.update(request.body)
    return digest.hexdigest()


def idempotent(
    handler: Callable[..., Response],
) -> Callable[..., Response]:
    @functools.wraps(handler)
    def wrapper(view: Any, request: Request, *args: Any, **kwargs: Any) -> Response:
        key = request.headers.get("Idempotency-Key", "").strip()
        if not key:
            return handler(view, request, *args, **kwargs)
        if len(key) > MAX_KEY_LENGTH:
            raise ApiError(
                f"Idempotency-Key must be at most {MAX_KEY_LENGTH} characters.",
                code="invalid_idempotency_key",
            )
        api_key = client(request).api_key
        fingerprint = _fingerprint(request)
        try:
            with transaction.atomic():
                record = IdempotencyRecord.objects.create(
                    api_key=api_key, key=key, request_fingerprint=fingerprint
                )
        except IntegrityError:
            existing = IdempotencyRecord.objects.get(api_key=api_key, key=key)
            if existing.request_fingerprint != fingerprint:
                raise ApiError(
                    "This Idempotency-Key was used with a different request.",
                    code="idempotency_key_reused",
                    status_code=status.HTTP_422_UNPROCESSABLE_ENTITY,
                ) from None
            if existing.state == IdempotencyRecord.State.RUNNING:
                raise ApiError(
                    "A request with this Idempotency-Key is still being processed.",
                    code="idempotency_request_in_progress",
                    status_code=status.HTTP_409_CONFLICT,
                ) from None
            assert existing.response_status is not None
            return Response(
                existing.response_body,
                status=existing.response_status,
                headers={"Idempotent-Replayed": "true"},
            )
        try:
            response = handler(view, request, *args, **kwargs)
        except BaseException:
            # Nothing was stored (services are transactional): free the key for a retry.
            record.delete()
            raise
        if response.status_code >= 500:
            record.delete()
            return response
        IdempotencyRecord.objects.filter(pk=record.pk).update(
            state=IdempotencyRecord.State.DONE,
            response_status=response.status_code,
            response_body=response.data,
        )
        return response

    return wrapper
