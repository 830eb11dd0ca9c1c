"""A period's invoice run started from the admin (``billing.invoice_runs``): its progress
for the page that polls it, and the outcome.

A row, not a cache entry: progress must be seen by every web process whatever the cache
(a per-process cache in production would answer "no such run" from the others), survives
restarts, keeps who ran what as a record, and carries the lease (``heartbeat_at``) that
tells a run whose worker died from a slow one.
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models


class InvoiceRunStage(models.TextChoices):
    QUEUED = "queued", "queued"
    DRAFTING = "drafting", "drafting"
    ISSUING = "issuing", "issuing"
    DONE = "done", "done"
    FAILED = "failed", "failed"


RUNNING_STAGES = (InvoiceRunStage.DRAFTING, InvoiceRunStage.ISSUING)


class InvoiceRun(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    period_start = models.DateField()  # the month's first day
    issue = models.BooleanField()  # issue the drafts too, or draft only
    stage = models.CharField(
        max_length=10, choices=InvoiceRunStage.choices, default=InvoiceRunStage.QUEUED
    )
    done = models.PositiveIntegerField(default=0)  # of ``total`` in the current stage
    total = models.PositiveIntegerField(default=0)
    drafted = models.PositiveIntegerField(default=0)  # invoices and credit notes made
    issued = models.JSONField(default=list, blank=True)  # invoice numbers
    refused = models.JSONField(default=list, blank=True)  # "partner currency: why"
    error = models.CharField(max_length=500, blank=True)
    started_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    # The worker's last sign of life (its claim, then every progress write): a run silent
    # for longer than ``billing.invoice_runs.LEASE`` lost its worker.
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["stage", "heartbeat_at"])]

    def __str__(self) -> str:
        return f"Invoice run of {self.period_start:%Y-%m} ({self.stage})"
