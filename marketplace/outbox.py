"""Transactional outbox: work for Celery workers that is never lost.

A broker is a second system: publishing to it after a commit can fail (broker down, process
killed) and work would be stranded with nobody to pick it up. So a task is first a row:

1. :func:`enqueue` writes an :class:`OutboxMessage` (task name, ids-only arguments, a
   deadline) in the caller's transaction, so it exists if and only if the change that
   needs it committed;
2. after commit, :func:`publish` sends it with the message's id as the Celery task id (a
   redelivered or re-published message is recognisably the same one). A publish that
   fails is logged and left to the sweeper: never raised to the caller, whose change has
   committed (an intake answers 201 whatever the broker does);
3. :func:`sweep` (beat, every few seconds) publishes again every message not done by its
   deadline, moving the deadline on with backoff: at-least-once, so every task is
   idempotent;
4. a task built on :class:`OutboxTask` marks its message done when it has finished (success
   or a failure that retrying will not cure); it acks late, is rejected (redelivered) when
   its worker dies, and retries database errors (a PostgreSQL restart's "terminating
   connection") with backoff instead of dropping the work.

Retry countdowns stay under the broker's visibility timeout (Redis redelivers an unacked
message after it, which would run a task twice while its retry is still waiting). In eager
mode (no broker: development and tests) publishing runs the task in-process at commit, as a
plain ``delay`` on commit would.
"""

from __future__ import annotations

import functools
import logging
import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

from celery import current_app, states
from celery.app.task import Task
from django.conf import settings
from django.db import DatabaseError, InterfaceError, OperationalError, transaction
from django.utils import timezone

from marketplace.models import OutboxMessage

logger = logging.getLogger(__name__)

# A published message not done this long after it was due is published again.
GRACE = timedelta(minutes=2)
# A message whose publish failed is tried again this soon (the broker may be back).
RETRY_UNPUBLISHED = timedelta(seconds=5)
# The sweeper's backoff for a message it keeps finding undone: GRACE doubled per attempt,
# up to this.
MAX_REDRIVE_INTERVAL = timedelta(hours=1)
SWEEP_BATCH = 500
# Done messages are deleted this long after they were done (the table stays small).
KEEP_DONE = timedelta(days=3)


def visibility_timeout() -> float:
    """Seconds the broker waits for an ack before it redelivers a message."""
    options = getattr(settings, "CELERY_BROKER_TRANSPORT_OPTIONS", {}) or {}
    return float(options.get("visibility_timeout", 3600))


def safe_countdown(seconds: float) -> float:
    """A retry countdown the broker will not pre-empt: at most half its visibility timeout."""
    return max(0.0, min(seconds, visibility_timeout() / 2))


def _queue_of(task_name: str) -> str:
    route = current_app.amqp.router.route({}, task_name, (), {})
    queue = route.get("queue")
    return str(getattr(queue, "name", queue) or "")


def _message(
    task: Task, args: Sequence[str], referral_id: uuid.UUID | None, countdown: float, now: datetime
) -> OutboxMessage:
    due = now + timedelta(seconds=countdown)
    return OutboxMessage(
        task=task.name,
        args=list(args),
        queue=_queue_of(task.name),
        referral_id=referral_id,
        created_at=now,
        due_at=due,
        deadline=due + GRACE,
    )


def enqueue(
    task: Task, *args: str, referral_id: uuid.UUID | None = None, countdown: float = 0.0
) -> OutboxMessage:
    """Store one message for ``task(*args)`` in the current transaction and publish it after
    commit. ``args``: ids and dates as strings, never personal data. ``referral_id``: the
    referral whose distribution waits on it (marketplace.dispatch.settle)."""
    (message,) = enqueue_many(task, [args], referral_id=referral_id, countdown=countdown)
    return message


def enqueue_many(
    task: Task,
    args_list: Iterable[Sequence[str]],
    *,
    referral_id: uuid.UUID | None = None,
    countdown: float = 0.0,
) -> list[OutboxMessage]:
    """:func:`enqueue` for several calls of one task, in one INSERT."""
    if not isinstance(task, OutboxTask):
        # Only an OutboxTask marks its message done; any other would be re-published for ever.
        raise TypeError(f"{task.name} is not an OutboxTask")
    now = timezone.now()
    messages = [_message(task, args, referral_id, countdown, now) for args in args_list]
    if not messages:
        return []
    if len(messages) == 1:
        messages[0].save(force_insert=True)
    else:
        OutboxMessage.objects.bulk_create(messages)
    # Not marked published when sent: on the request path that was one more transaction
    # (and WAL flush) per message, and nothing depends on the mark; the deadline alone
    # brings the sweeper back to a message whose publish was lost.
    transaction.on_commit(functools.partial(publish, messages, mark_sent=False))
    return messages


def publish(messages: Sequence[OutboxMessage], *, mark_sent: bool = True) -> int:
    """Send messages to the broker; returns how many were sent. Never raises: a message
    that could not be sent stays in the outbox for :func:`sweep`, due again soon.
    ``mark_sent``: stamp ``published_at`` on those sent (the sweeper's publications; the
    first one, right after the commit, is not stamped)."""
    sent: list[uuid.UUID] = []
    failed: list[uuid.UUID] = []
    for message in messages:
        try:
            countdown = (message.due_at - timezone.now()).total_seconds()
            current_app.tasks[message.task].apply_async(
                args=message.args, task_id=str(message.id), countdown=safe_countdown(countdown)
            )
        except Exception as exc:  # any broker or serialisation error: the sweeper retries
            # The class name only: a broker error's text may carry its URL and password.
            logger.warning(
                "outbox: publishing %s %s failed (%s); the sweeper will retry it",
                message.task,
                message.id,
                type(exc).__name__,
            )
            failed.append(message.id)
        else:
            sent.append(message.id)
    now = timezone.now()
    try:
        if sent and mark_sent:
            OutboxMessage.objects.filter(id__in=sent, published_at__isnull=True).update(
                published_at=now
            )
        if failed:
            OutboxMessage.objects.filter(id__in=failed, done_at__isnull=True).update(
                deadline=now + RETRY_UNPUBLISHED
            )
    except DatabaseError as exc:
        # Bookkeeping only: the deadline still brings the sweeper back to these messages.
        logger.warning("outbox: recording publication failed (%s)", type(exc).__name__)
    return len(sent)


def finish(message_id: str | None) -> None:
    """Mark a message done (its task has finished). A no-op for a task not sent through the
    outbox, and never raises: a message left undone is only published once more."""
    if not message_id:
        return
    try:
        OutboxMessage.objects.filter(id=message_id, done_at__isnull=True).update(
            done_at=timezone.now()
        )
    except (ValueError, DatabaseError) as exc:  # ValueError: a task id that is not a uuid
        logger.warning("outbox: marking %s done failed (%s)", message_id, type(exc).__name__)


def postpone(message_id: str | None, countdown: float) -> None:
    """A task retries in ``countdown`` seconds: the sweeper waits for that retry first."""
    if not message_id:
        return
    try:
        OutboxMessage.objects.filter(id=message_id, done_at__isnull=True).update(
            deadline=timezone.now() + timedelta(seconds=countdown) + GRACE
        )
    except (ValueError, DatabaseError) as exc:
        logger.warning("outbox: postponing %s failed (%s)", message_id, type(exc).__name__)


def _redrive_interval(attempts: int) -> timedelta:
    return min(GRACE * (2 ** min(attempts, 10)), MAX_REDRIVE_INTERVAL)


def claim_due(*, now: datetime | None = None, limit: int = SWEEP_BATCH) -> list[OutboxMessage]:
    """Undone messages past their deadline, with their next deadline set (backoff). Rows are
    skipped, not waited for, when another sweeper holds them."""
    now = now or timezone.now()
    with transaction.atomic():
        due = list(
            OutboxMessage.objects.select_for_update(skip_locked=True)
            .filter(done_at__isnull=True, deadline__lte=now)
            .order_by("deadline")[:limit]
        )
        for message in due:
            message.attempts += 1
            message.deadline = now + _redrive_interval(message.attempts)
        OutboxMessage.objects.bulk_update(due, ["attempts", "deadline"])
    return due


def sweep(*, now: datetime | None = None) -> int:
    """Publish again every message not done by its deadline; delete long-done ones. Returns
    how many were published."""
    now = now or timezone.now()
    published = publish(claim_due(now=now))
    OutboxMessage.objects.filter(
        pk__in=OutboxMessage.objects.filter(done_at__lt=now - KEEP_DONE).values("pk")[:SWEEP_BATCH]
    ).delete()
    return published


class OutboxTask(Task):
    """Base of every task published through the outbox: acks late, redelivered when its
    worker dies, database errors retried with backoff (capped well under the visibility
    timeout), and its message marked done when it has finished for good."""

    acks_late = True
    reject_on_worker_lost = True
    # OperationalError: the server went away or restarted ("terminating connection");
    # InterfaceError: the connection was already closed. Django drops the broken
    # connection after the task (Celery's Django fixup), so the retry reconnects.
    autoretry_for = (OperationalError, InterfaceError)
    retry_backoff = 2
    retry_backoff_max = 60
    retry_jitter = True
    max_retries = None

    def after_return(
        self,
        status: str,
        retval: Any,
        task_id: str,
        args: Any,
        kwargs: Any,
        einfo: Any,
    ) -> None:
        # RETRY is not an end: the message stays undone until the retry finishes.
        if status in (states.SUCCESS, states.FAILURE) and not getattr(
            self.request, "outbox_done", False
        ):
            finish(task_id)


def finish_now(task: Task) -> None:
    """Mark the running task's message done before the task's last step (which may check
    that nothing of its referral is left undone); its after_return then skips it."""
    finish(task.request.id)
    # Read by OutboxTask.after_return (Celery's request context takes any attribute).
    task.request.outbox_done = True  # type: ignore[attr-defined]
