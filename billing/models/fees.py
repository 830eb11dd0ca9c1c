"""What a partner pays: versioned fee schedules with their volume tiers, and the dated
exchange rates a fee in another currency is converted with.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import F, Q

from billing.models.columns import _money
from partners.currencies import Currency
from partners.models import Partner, Product


class FeeSchedule(models.Model):
    """What a partner pays, optionally for one product, over a span of time. Versioned:
    a change is a new schedule (the old one closed by ``effective_to``), never an edit of
    one that priced charges. Created through ``billing.fees.create_fee_schedule``, which
    refuses overlapping spans in one scope."""

    partner = models.ForeignKey(Partner, on_delete=models.PROTECT, related_name="fee_schedules")
    # NULL: applies to all the partner's products without a schedule of their own.
    product = models.ForeignKey(
        Product, null=True, blank=True, on_delete=models.PROTECT, related_name="fee_schedules"
    )
    # 1, 2, ... per scope (partner + product, or partner-wide), in order of creation.
    version = models.PositiveIntegerField(default=1)
    currency = models.CharField(max_length=3, choices=Currency.choices, default=Currency.CNY)
    # Per accepted lead (CPL); an auction lead pays its winning bid instead.
    cpl = _money(default=0)
    # Per approved loan (CPA).
    cpa = _money(default=0)
    # Fraction of funded principal (CPF), 0.0300 = 3%, clamped to [cpf_min, cpf_max] per loan.
    cpf_rate = models.DecimalField(max_digits=6, decimal_places=4, default=0)
    cpf_min = _money(default=0)
    cpf_max = _money(null=True, blank=True)
    # Revenue share: fraction of the revenue a partner reports on a funded loan (a
    # ``revenue`` event: interest and fees collected in a period), 0.1000 = 10%, per event,
    # rounded to cents; no minimum, maximum or volume tiers. 0: no revenue share.
    revshare_rate = models.DecimalField(max_digits=6, decimal_places=4, default=0)
    effective_from = models.DateTimeField()
    effective_to = models.DateTimeField(null=True, blank=True)  # exclusive; NULL: open-ended
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(cpl__gte=0)
                & Q(cpa__gte=0)
                & Q(cpf_rate__gte=0)
                & Q(cpf_rate__lte=1)
                & Q(cpf_min__gte=0),
                name="fee_schedule_non_negative",
            ),
            models.CheckConstraint(
                condition=Q(revshare_rate__gte=0) & Q(revshare_rate__lte=1),
                name="fee_schedule_revshare_rate",
            ),
            models.CheckConstraint(
                condition=Q(cpf_max__isnull=True) | Q(cpf_max__gte=F("cpf_min")),
                name="fee_schedule_cpf_bounds",
            ),
            models.CheckConstraint(
                condition=Q(effective_to__isnull=True) | Q(effective_to__gt=F("effective_from")),
                name="fee_schedule_span",
            ),
            models.CheckConstraint(
                condition=Q(currency__in=Currency.values), name="fee_schedule_known_currency"
            ),
        ]

    def __str__(self) -> str:
        scope = self.product.name if self.product else "all products"
        return f"{self.partner.name} ({scope}) v{self.version} from {self.effective_from:%Y-%m-%d}"


class FeeTier(models.Model):
    """A volume tier, **marginal**: it prices only the units of a fee kind beyond
    ``from_count`` in a calendar month (UTC); earlier units keep their price. A NULL fee
    keeps the schedule's (or the lower tier's) price for that kind."""

    schedule = models.ForeignKey(FeeSchedule, on_delete=models.PROTECT, related_name="tiers")
    # Units of the month already charged before this tier starts (100: from the 101st).
    from_count = models.PositiveIntegerField()
    cpl = _money(null=True, blank=True)  # per accepted lead beyond the threshold
    cpa = _money(null=True, blank=True)  # per approval beyond the threshold
    cpf_rate = models.DecimalField(max_digits=6, decimal_places=4, null=True, blank=True)

    class Meta:
        ordering = ["schedule", "from_count"]
        constraints = [
            models.UniqueConstraint(fields=["schedule", "from_count"], name="fee_tier_once"),
            models.CheckConstraint(
                condition=Q(from_count__gte=1)
                & (Q(cpl__isnull=True) | Q(cpl__gte=0))
                & (Q(cpa__isnull=True) | Q(cpa__gte=0))
                & (Q(cpf_rate__isnull=True) | (Q(cpf_rate__gte=0) & Q(cpf_rate__lte=1))),
                name="fee_tier_non_negative",
            ),
        ]

    def __str__(self) -> str:
        return f"beyond {self.from_count} a month"


class ExchangeRate(models.Model):
    """A dated exchange rate finance entered: one unit of ``from_currency`` is ``rate``
    units of ``to_currency``. Only the entered direction is used (no silent inversion).
    In force at time t: the pair's latest ``effective_from`` <= t. Never edited: a
    correction is a new row; charges record the row and the rate they used."""

    from_currency = models.CharField(max_length=3, choices=Currency.choices)
    to_currency = models.CharField(max_length=3, choices=Currency.choices)
    rate = models.DecimalField(max_digits=18, decimal_places=8)  # to per one from, > 0
    effective_from = models.DateTimeField()
    # Where the number comes from (e.g. "PBOC central parity 2026-11-02"): auditors ask.
    source = models.CharField(max_length=200)
    entered_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-effective_from", "from_currency", "to_currency"]
        constraints = [
            models.UniqueConstraint(
                fields=["from_currency", "to_currency", "effective_from"],
                name="exchange_rate_once_per_time",
            ),
            models.CheckConstraint(condition=Q(rate__gt=0), name="exchange_rate_positive"),
            models.CheckConstraint(
                condition=~Q(from_currency=F("to_currency")), name="exchange_rate_two_currencies"
            ),
        ]

    def __str__(self) -> str:
        return (
            f"1 {self.from_currency} = {self.rate.normalize():f} {self.to_currency} "
            f"from {self.effective_from:%Y-%m-%d %H:%M}"
        )
