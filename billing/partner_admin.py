"""Billing's part of the partner and product admin pages: a monthly budget saved there
takes effect at once.

``partners`` sits below ``billing`` and cannot call it, and a save signal would hide the
call (holds written by billing used to bounce back through one). So billing registers the
Partner and Product admins itself: partners' own admin classes plus, after a save that
changed ``monthly_budget``, an explicit :func:`billing.budgets.evaluate_budgets`, which
places or lifts the budget's own hold. Budgets changed any other way are caught by the
hourly sweep (``billing.budgets.sweep_budgets``).
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from billing import budgets
from partners.admin import PartnerAdmin, ProductAdmin
from partners.models import Partner, Product


class PartnerBudgetAdmin(PartnerAdmin):
    def save_model(self, request: HttpRequest, obj: Partner, form: Any, change: bool) -> None:
        super().save_model(request, obj, form, change)
        if "monthly_budget" in form.changed_data:
            budgets.evaluate_budgets(partner_id=obj.pk)


class ProductBudgetAdmin(ProductAdmin):
    def save_model(self, request: HttpRequest, obj: Product, form: Any, change: bool) -> None:
        super().save_model(request, obj, form, change)
        if "monthly_budget" in form.changed_data:
            budgets.evaluate_budgets(partner_id=obj.partner_id, product_ids=[obj.pk])


admin.site.unregister(Partner)
admin.site.register(Partner, PartnerBudgetAdmin)
admin.site.unregister(Product)
admin.site.register(Product, ProductBudgetAdmin)
