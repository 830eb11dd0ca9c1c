"""``Idempotency-Key`` for creating POSTs: same key and body replays the first response,
same key with another body is 422, a request still running is 409."""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response

from partners.authentication import client
from partners.errors import ApiError
from partners.models import ApiKey, IdempotencyRecord

MAX_KEY_LENGTH = 200
# A RUNNING record older than this belongs to a request whose process died.
STALE_AFTER = timedelta(minutes=5)


def _fingerprint(request: Request) -> str:
    digest = hashlib.sha256()
    digest.update(request.method.encode() if request.method else b"")
    digest.update(b"\0" + request.path.encode() + b"\0")
    digest.update(request.body)
    return digest.hexdigest()


def _claim(api_key: ApiKey, key: str, fingerprint: str) -> IdempotencyRecord | Response:
    """Our RUNNING record for this key, or the response to give instead."""
    for _attempt in range(3):
        try:
            with transaction.atomic():
                return IdempotencyRecord.objects.create(
                    api_key=api_key, key=key, request_fingerprint=fingerprint
                )
        except IntegrityError:
            pass
        existing = IdempotencyRecord.objects.filter(api_key=api_key, key=key).first()
        if existing is None:
            continue  # its request failed and freed the key just now: claim it again
        if existing.request_fingerprint != fingerprint:
            raise ApiError(
                "This Idempotency-Key was used with a different request.",
                code="idempotency_key_reused",
                status_code=status.HTTP_422_UNPROCESSABLE_ENTITY,
            )
        if existing.state == IdempotencyRecord.State.RUNNING:
            if existing.created_at < timezone.now() - STALE_AFTER:
                # Its process died mid-request; nothing of it was committed (see below).
                IdempotencyRecord.objects.filter(
                    pk=existing.pk, state=IdempotencyRecord.State.RUNNING
                ).delete()
                continue
            raise ApiError(
                "A request with this Idempotency-Key is still being processed.",
                code="idempotency_request_in_progress",
                status_code=status.HTTP_409_CONFLICT,
            )
        assert existing.response_status is not None
        return Response(
            existing.response_body,
            status=existing.response_status,
            headers={"Idempotent-Replayed": "true"},
        )
    raise ApiError(
        "A request with this Idempotency-Key is still being processed.",
        code="idempotency_request_in_progress",
        status_code=status.HTTP_409_CONFLICT,
    )


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
        claimed = _claim(api_key, key, _fingerprint(request))
        if isinstance(claimed, Response):
            return claimed
        try:
            # The handler's writes and the stored response commit together: a crash can
            # leave a RUNNING record, but never one whose request took effect.
            with transaction.atomic():
                response = handler(view, request, *args, **kwargs)
                if response.status_code < 500:
                    IdempotencyRecord.objects.filter(pk=claimed.pk).update(
                        state=IdempotencyRecord.State.DONE,
                        response_status=response.status_code,
                        response_body=response.data,
                    )
        except BaseException:
            claimed.delete()  # nothing was applied: free the key for a retry
            raise
        if response.status_code >= 500:
            claimed.delete()
        return response

    return wrapper
