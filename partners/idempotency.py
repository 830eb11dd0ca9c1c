"""``Idempotency-Key`` for creating POSTs: same key and body replays the first response,
same key with another body is 422; the record is written in the request's own transaction
(see :func:`idempotent`)."""

from __future__ import annotations

import functools
import hashlib
import logging
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from django.db import InterfaceError, OperationalError, connection, transaction
from django.utils import timezone
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response

from partners.authentication import client
from partners.errors import ApiError
from partners.models import ApiKey, IdempotencyRecord

logger = logging.getLogger(__name__)

MAX_KEY_LENGTH = 200
# A keyed request whose database connection broke (PostgreSQL restarted, a failover) runs
# again on a new connection after these pauses: its record says whether it took effect.
RECONNECT_PAUSES = (0.5, 1.0, 2.0, 4.0)
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

        def run() -> Response:
            return _run_once(
                lambda: handler(view, request, *args, **kwargs),
                api_key=api_key,
                key=key,
                fingerprint=fingerprint,
            )

        if connection.in_atomic_block:  # a caller's transaction: it cannot be run again
            return run()
        for pause in RECONNECT_PAUSES:
            try:
                return run()
            except (OperationalError, InterfaceError) as error:
                # The connection broke mid-request, even at COMMIT: the record is written in
                # the same transaction, so the next run replays the response if it committed
                # and runs the request again if not. Never twice, never lost.
                logger.warning(
                    "database connection lost (%s); running the request again",
                    type(error).__name__,
                )
                connection.close()
                time.sleep(pause)
        return run()

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
