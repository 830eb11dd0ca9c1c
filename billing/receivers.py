"""Budgets changed in the admin take effect at once (connected in BillingConfig.ready).
Partner events are not signalled: ``billing.outcomes.report_outcome`` composes them."""

from __future__ import annotations

from typing import Any

from django.db.models.signals import post_save
from django.dispatch import receiver

from billing import budgets
from partners.models import Partner, Product

# Saves that only move a hold (partners.holds) never change a budget.
HOLD_FIELDS = frozenset({"routing_hold", "updated_at"})


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
