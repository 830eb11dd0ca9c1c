"""What a product charges the borrower besides interest: the fees that, with the APR, make
the all-in cost regulators cap (``partners.all_in_cost``). Fractions of the principal."""

from __future__ import annotations

from decimal import Decimal

from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models

FEE_RATE = [MinValueValidator(Decimal(0)), MaxValueValidator(Decimal(1))]


class FeeFields(models.Model):
    # Charged once when the loan is funded (service, guarantee, membership fees), as a
    # fraction of the principal: 0.0200 = 2%.
    upfront_fee_rate = models.DecimalField(
        max_digits=5, decimal_places=4, default=Decimal("0"), validators=FEE_RATE
    )
    # Charged every month of the term on the original principal (account, insurance fees).
    monthly_fee_rate = models.DecimalField(
        max_digits=5, decimal_places=4, default=Decimal("0"), validators=FEE_RATE
    )

    class Meta:
        abstract = True
