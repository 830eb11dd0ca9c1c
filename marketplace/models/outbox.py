"""The transactional outbox: work for workers, written in the business transaction."""

from __future__ import annotations

import uuid

from django.db import models
from django.db.models import Q
from django.utils import timezone

from marketplace.models.referrals import Referral


class OutboxMessage(models.Model):
    """A task for a worker, written in the same transaction as the change that needs it
    (a transactional outbox: marketplace.outbox). Published after commit, published again
    by the sweeper while not done by its deadline, done when its task has finished."""

    # Also the Celery task id, so every publication of one message is recognisably one.
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    task = models.CharField(max_length=120)  # registered Celery task name
    args = models.JSONField(default=list)  # ids and dates only: never personal data
    queue = models.CharField(max_length=40, blank=True)
    # The referral whose distribution this is part of (it is terminal only when none of
    # its messages is left undone); NULL for other work (billing).
    referral = models.ForeignKey(
        Referral,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="+",
        db_index=False,  # outbox_undone_per_referral is the one lookup
    )
    created_at = models.DateTimeField(default=timezone.now)
    # Not before (a retry's countdown).
    due_at = models.DateTimeField(default=timezone.now)
    # Not done by then: the sweeper publishes it again (and moves this on).
    deadline = models.DateTimeField()
    # Last published by the sweeper (the first publication, right after the commit that
    # wrote the message, is not stamped: a write fewer on the request path).
    published_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0)  # publications so far
    done_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [
            models.Index(
                fields=["deadline"],
                condition=Q(done_at__isnull=True),
                name="outbox_undone_by_deadline",
            ),
            models.Index(
                fields=["referral"],
                condition=Q(done_at__isnull=True),
                name="outbox_undone_per_referral",
            ),
            models.Index(fields=["done_at"], name="outbox_done_at"),
        ]

    def __str__(self) -> str:
        return f"{self.task} {self.id}"
