"""API requests ride out a lost database connection (PostgreSQL restarted, a failover).

The one place that does it, for every view under ``/api/``: :class:`ReconnectMiddleware`
runs the view itself (``process_view``). When the database connection is lost anywhere in
it, authentication's key lookup included, it closes the connection and runs the whole view
again from the start (authentication, throttling, the handler) on a new connection, pausing
between runs, for at most ``RECONNECT_BUDGET_SECONDS``. Only a request that is safe to run
twice is run again:

* a read (GET, HEAD, OPTIONS);
* a handler marked :func:`repeatable`: every keyed request under
  ``partners.idempotency.idempotent`` (its record is written in the request's own
  transaction, so a run after a commit whose answer was lost replays the stored response),
  and handlers idempotent by their own content (a partner's event, by its event id).

Anything else, and anything still failing when the budget is spent, answers 503 with
``Retry-After`` in the API's error shape, never a 500 (``partners.exception_handler`` leaves
these errors to this middleware). Other database errors on a working connection (a
statement timeout, a deadlock) are not this module's: they stay the view's to answer.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from http import HTTPStatus
from typing import Any, TypeVar

from django.db import DatabaseError, InterfaceError, OperationalError, connections
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.http.response import HttpResponseBase

from partners.error_responses import error_body, is_api_request

logger = logging.getLogger(__name__)

# Under gunicorn's --timeout (deploy/supervisord.conf: 30 s) with room for the last run,
# and under the 30 s a typical HTTP client waits: a PostgreSQL restart takes seconds.
RECONNECT_BUDGET_SECONDS = 15.0
# Between runs; the last pause repeats until the budget is spent. Connecting to a server
# that is down fails at once, so these pauses are most of the wait.
RECONNECT_PAUSES = (0.25, 0.5, 1.0, 2.0)
RETRY_AFTER_SECONDS = 5
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# SQLSTATEs that mean the server ended or refused the session, not the statement: class 08
# (connection exception) and 57P01-57P03 (admin shutdown, crash shutdown, cannot connect
# now: "the database system is starting up").
_SESSION_ENDED = frozenset({"57P01", "57P02", "57P03"})

RequestTest = Callable[[HttpRequest], bool]
Handler = TypeVar("Handler", bound=Callable[..., Any])
_MARK = "repeatable_after_reconnect"


def connection_lost(error: BaseException) -> bool:
    """Whether a database error says the connection is gone (a new one may work), rather
    than that a statement failed on a working one (a timeout, a missing table)."""
    if isinstance(error, InterfaceError):
        return True  # the connection was already closed
    if not isinstance(error, OperationalError):
        return False
    cause = error.__cause__
    if cause is None:
        return True  # raised by Django itself, not by the driver (or a test's stand-in)
    if hasattr(cause, "sqlite_errorcode"):
        return False  # SQLite has no connection to lose: locked, a missing table, ...
    sqlstate: str | None = getattr(cause, "sqlstate", None)
    if sqlstate is None:
        return True  # psycopg's own: refused, "server closed the connection unexpectedly"
    return sqlstate.startswith("08") or sqlstate in _SESSION_ENDED


def _always(request: HttpRequest) -> bool:
    return True


def repeatable(when: RequestTest = _always) -> Callable[[Handler], Handler]:
    """Mark a view's handler method as safe to run again after a lost connection, for the
    requests ``when`` accepts (by default all). Say in a comment why it is safe."""

    def mark(handler: Handler) -> Handler:
        setattr(handler, _MARK, when)
        return handler

    return mark


def repeatable_test(handler: object) -> RequestTest | None:
    test = getattr(handler, _MARK, None)
    return test if callable(test) else None


def _may_repeat(request: HttpRequest, view_func: Callable[..., Any]) -> bool:
    if request.method in READ_METHODS:
        return True
    # DRF's as_view() keeps the view class on the function; the handler is the method
    # DRF's dispatch will call for this request.
    view_class = getattr(view_func, "cls", None)
    handler = getattr(view_class, (request.method or "").lower(), None)
    test = repeatable_test(handler)
    return test is not None and test(request)


def _drop_connections() -> bool:
    """Close the broken connections, so the next query opens a new one. False when one is
    inside a transaction this middleware did not open (a test's, ATOMIC_REQUESTS): that
    transaction is lost, and running the view again inside it cannot help."""
    ours = True
    for conn in connections.all(initialized_only=True):
        if conn.in_atomic_block:
            ours = False
        else:
            conn.close()
    return ours


def database_unavailable(*, repeatable: bool) -> HttpResponse:
    if repeatable:
        message = (
            "The database is unavailable; nothing of this request is lost by sending it "
            "again after Retry-After seconds."
        )
    else:
        message = (
            "The database connection was lost while this request was handled. It was not "
            "run again, because it is not safe to repeat, and it may or may not have taken "
            "effect. Send creating requests with an Idempotency-Key to make retries safe."
        )
    response = JsonResponse(
        error_body("database_unavailable", message), status=HTTPStatus.SERVICE_UNAVAILABLE
    )
    response["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response


class ReconnectMiddleware:
    """Runs ``/api/`` views, again on a new connection when theirs was lost (see the module
    docstring). Must come after every middleware that has a ``process_view``."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        return self.get_response(request)

    def process_view(
        self,
        request: HttpRequest,
        view_func: Callable[..., HttpResponseBase],
        view_args: tuple[Any, ...],
        view_kwargs: dict[str, Any],
    ) -> HttpResponseBase | None:
        if not is_api_request(request):
            return None
        may_repeat = _may_repeat(request, view_func)
        if may_repeat:
            # Read the body once and keep it: every run parses the same bytes (a stream
            # read by the first run could not be read again).
            _ = request.body
        deadline = time.monotonic() + RECONNECT_BUDGET_SECONDS
        runs = 0
        while True:
            runs += 1
            try:
                return view_func(request, *view_args, **view_kwargs)
            except DatabaseError as error:
                if not connection_lost(error):
                    raise
                reconnectable = _drop_connections()
                pause = RECONNECT_PAUSES[min(runs, len(RECONNECT_PAUSES)) - 1]
                if not (may_repeat and reconnectable) or time.monotonic() + pause > deadline:
                    # Ids only in the log: the path may name a lead, never a person.
                    logger.warning(
                        "database connection lost (%s) in %s %s after %d run(s); answering 503",
                        type(error).__name__,
                        request.method,
                        _route(request),
                        runs,
                    )
                    return database_unavailable(repeatable=may_repeat)
                logger.warning(
                    "database connection lost (%s) in %s %s; running it again in %.2fs",
                    type(error).__name__,
                    request.method,
                    _route(request),
                    pause,
                )
                time.sleep(pause)


def _route(request: HttpRequest) -> str:
    match = request.resolver_match
    return match.route if match is not None else "?"
