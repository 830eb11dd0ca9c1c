"""Billing's subscription to marketplace events (connected in BillingConfig.ready)."""

from __future__ import annotations

from functools import partial
from typing import Any

from django.db import transaction
from django.db.models.signals import post_save
from django.dispatch import receiver

from billing import budgets, tasks
from billing.charging import charge_for_event, renumbers
from marketplace.models import LeadEvent
from marketplace.signals import lead_event_recorded
from partners.models import Partner, Product

# Saves that only move a hold (partners.holds) never change a budget.
HOLD_FIELDS = frozenset({"routing_hold", "updated_at"})


@receiver(lead_event_recorded)
def charge_event(sender: Any, *, event: LeadEvent, **kwargs: Any) -> None:
    # Runs in the transaction that stored the event: no event is ever left unbilled, and a
    # charge that reaches a budget or the credit limit holds routing with it.
    charge_for_event(event=event)
    renumbered = renumbers(event)
    if renumbered is not None:
        partner_id, month = renumbered
        transaction.on_commit(partial(tasks.retier_month.delay, str(partner_id), month.isoformat()))


@receiver(post_save, sender=Partner)
def partner_saved(
    sender: Any, *, instance: Partner, update_fields: frozenset[str] | None, **kwargs: Any
) -> None:
    # A budget raised (or lowered) in the admin takes effect at once.
    if kwargs.get("raw") or (update_fields is not None and set(update_fields) <= HOLD_FIELDS):
        return
    if instance.monthly_budget is not None or instance.routing_hold == budgets.HOLD_REASON:
        budgets.evaluate_budgets(partner_id=instance.pk)


@receiver(post_save, sender=Product)
def product_saved(
    sender: Any, *, instance: Product, update_fields: frozenset[str] | None, **kwargs: Any
) -> None:
    if kwargs.get("raw") or (update_fields is not None and set(update_fields) <= HOLD_FIELDS):
        return
    if instance.monthly_budget is not None or instance.routing_hold == budgets.HOLD_REASON:
        budgets.evaluate_budgets(partner_id=instance.partner_id, product_ids=[instance.pk])
