"""``Idempotency-Key`` for creating POSTs: same key and body replays the first response,
same key with another body is 422; the record is written in the request's own transaction
(see :func:`idempotent`), which is what makes a keyed request safe to run again after a lost
database connection (``partners.reconnect`` does, for the whole request)."""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from django.db import transaction
from django.http import HttpRequest
from django.utils import timezone
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response

from partners.authentication import client
from partners.errors import ApiError
from partners.models import ApiKey, IdempotencyRecord
from partners.reconnect import repeatable, repeatable_test

MAX_KEY_LENGTH = 200
# A RUNNING record is only ever left by a process of the earlier design (which claimed the
# key in a transaction of its own); one older than this belongs to a request that died.
STALE_AFTER = timedelta(seconds=30)


def _fingerprint(request: Request) -> str:
    digest = hashlib.sha256()
    digest.update(request.method.encode() if request.method else b"")
    digest.update(b"\0" + request.path.encode() + b"\0")
    digest.update(request.body)
    return digest.hexdigest()


def _in_progress() -> ApiError:
    return ApiError(
        "A request with this Idempotency-Key is still being processed.",
        code="idempotency_request_in_progress",
        status_code=status.HTTP_409_CONFLICT,
    )


def _stored(api_key: ApiKey, key: str, fingerprint: str) -> Response | None:
    """The response stored for this key, or None when the key is free."""
    existing = IdempotencyRecord.objects.filter(api_key=api_key, key=key).first()
    if existing is None:
        return None
    if existing.request_fingerprint != fingerprint:
        raise ApiError(
            "This Idempotency-Key was used with a different request.",
            code="idempotency_key_reused",
            status_code=status.HTTP_422_UNPROCESSABLE_ENTITY,
        )
    if existing.state == IdempotencyRecord.State.RUNNING:
        if existing.created_at >= timezone.now() - STALE_AFTER:
            raise _in_progress()
        IdempotencyRecord.objects.filter(
            pk=existing.pk, state=IdempotencyRecord.State.RUNNING
        ).delete()
        return None
    assert existing.response_status is not None
    return Response(
        existing.response_body,
        status=existing.response_status,
        headers={"Idempotent-Replayed": "true"},
    )


def _keyed(request: HttpRequest) -> bool:
    return bool(request.headers.get("Idempotency-Key", "").strip())


def idempotent(
    handler: Callable[..., Response],
) -> Callable[..., Response]:
    """Run the handler and store its response under the key in ONE transaction: the record
    exists if and only if the request took effect, so a request that dies (or fails, or
    answers 5xx) leaves nothing behind and its retry simply runs again. A concurrent
    request with the same key waits on the record's unique index (PostgreSQL) or the
    database lock (SQLite), then rolls back and replays the first one's stored response,
    whatever its own handler raised meanwhile (e.g. the duplicate a unique constraint of
    the handler's own tables reported first)."""

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
        return _run_once(
            lambda: handler(view, request, *args, **kwargs),
            api_key=api_key,
            key=key,
            fingerprint=fingerprint,
        )

    if repeatable_test(wrapper) is None:  # not already safe to repeat without a key
        # A lost connection, even at COMMIT, runs a keyed request again from the start
        # (partners.reconnect): the next run replays the response if it committed and does
        # the work if not. Never twice, never lost.
        wrapper = repeatable(when=_keyed)(wrapper)
    return wrapper


def _run_once(
    handle: Callable[[], Response], *, api_key: ApiKey, key: str, fingerprint: str
) -> Response:
    replay = _stored(api_key, key, fingerprint)
    if replay is not None:
        return replay
    try:
        with transaction.atomic():
            response = handle()
            if response.status_code >= 500:
                return response  # nothing of it is kept for a replay
            IdempotencyRecord.objects.create(
                api_key=api_key,
                key=key,
                request_fingerprint=fingerprint,
                state=IdempotencyRecord.State.DONE,
                response_status=response.status_code,
                response_body=response.data,
            )
    except Exception:
        # Rolled back. A concurrent request with this key may have committed first:
        # then this one's answer is that request's stored response.
        replay = _stored(api_key, key, fingerprint)
        if replay is not None:
            return replay
        raise
    return response
