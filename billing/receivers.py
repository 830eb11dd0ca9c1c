"""Billing's subscription to marketplace events (connected in BillingConfig.ready)."""

from __future__ import annotations

from typing import Any

from django.dispatch import receiver

from billing.charging import charge_for_event
from marketplace.models import LeadEvent
from marketplace.signals import lead_event_recorded


@receiver(lead_event_recorded)
def charge_event(sender: Any, *, event: LeadEvent, **kwargs: Any) -> None:
    # Runs in the transaction that stored the event: no event is ever left unbilled.
    charge_for_event(event=event)
