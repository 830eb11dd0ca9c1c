"""Scheduled billing work (celery beat); every task is idempotent."""

from __future__ import annotations

from celery import shared_task
from django.utils import timezone

from billing import charging, invoicing


@shared_task
def generate_last_month_invoices() -> int:
    period = invoicing.previous_period(timezone.now().date())
    return len(invoicing.generate_invoices(period=period))


@shared_task
def charge_unbilled_events() -> int:
    return charging.charge_unbilled_events()
