"""Reads for the dashboard, all from the daily aggregates (plus the product catalogue for
caps). Rates are ratios of counts over the chosen days; None where the base is zero."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from django.db.models import F, QuerySet, Sum

from billing.daily_revenue import DailyRevenue
from billing.models import ExperimentFigures
from billing.money import to_cents
from marketplace.experiments.results import STAGES as LAB_STAGES
from marketplace.models import DailyFunnel
from marketplace.models.experiments import Experiment, ExperimentStatus
from partners.models import Product

STAGES = ["referred", "matched", "delivered", "accepted", "approved", "funded"]
COUNTS = [*STAGES, "returned", "pings", "ping_timeouts", "ping_latency_ms_sum", "delivery_failures"]
GROUPS = {"partner": "partner__name", "channel": "channel", "risk_tier": "risk_tier"}


@dataclass(frozen=True)
class Filters:
    start: date
    end: date  # inclusive
    is_sandbox: bool = False
    partner_id: uuid.UUID | None = None
    channel: str = ""
    risk_tier: str = ""
    group: str = "partner"


def _sums() -> dict[str, Any]:
    return {name: Sum(name) for name in COUNTS}


def funnel_rows(filters: Filters) -> QuerySet[DailyFunnel]:
    rows = DailyFunnel.objects.filter(
        day__gte=filters.start, day__lte=filters.end, is_sandbox=filters.is_sandbox
    )
    if filters.partner_id:
        rows = rows.filter(partner_id=filters.partner_id)
    if filters.channel:
        rows = rows.filter(channel=filters.channel)
    if filters.risk_tier:
        rows = rows.filter(risk_tier=filters.risk_tier)
    return rows.order_by()


def _rate(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def by_day(filters: Filters) -> dict[str, list[Any]]:
    """The funnel per day, every day of the range present (zeros included)."""
    found: dict[date, dict[str, Any]] = {
        row["day"]: dict(row) for row in funnel_rows(filters).values("day").annotate(**_sums())
    }
    days = [
        filters.start + timedelta(days=n) for n in range((filters.end - filters.start).days + 1)
    ]
    series: dict[str, list[Any]] = {"days": [day.isoformat() for day in days]}
    for name in COUNTS:
        series[name] = [int(found.get(day, {}).get(name) or 0) for day in days]
    return series


def totals(filters: Filters) -> dict[str, Any]:
    sums = funnel_rows(filters).aggregate(**_sums())
    counts = {name: int(sums[name] or 0) for name in COUNTS}
    delivered = counts["delivered"]
    return {
        **counts,
        "approval_rate": _rate(counts["approved"], delivered),
        "funding_rate": _rate(counts["funded"], delivered),
        "return_rate": _rate(counts["returned"], delivered),
        "timeout_rate": _rate(counts["ping_timeouts"], counts["pings"]),
        "mean_ping_ms": _rate(counts["ping_latency_ms_sum"], counts["pings"]),
    }


def breakdown(filters: Filters) -> list[dict[str, Any]]:
    """The funnel and rates per partner, channel or risk tier."""
    column = GROUPS[filters.group]
    rows = funnel_rows(filters).values(column).annotate(**_sums()).order_by(column)
    result = []
    for row in rows:
        counts = {name: int(row[name] or 0) for name in COUNTS}
        label = row[column] or ("(before matching)" if filters.group == "partner" else "-")
        result.append(
            {
                "label": label,
                **counts,
                "approval_rate": _rate(counts["approved"], counts["delivered"]),
                "funding_rate": _rate(counts["funded"], counts["delivered"]),
                "return_rate": _rate(counts["returned"], counts["delivered"]),
            }
        )
    return result


def ping_health(filters: Filters) -> list[dict[str, Any]]:
    """Per partner: pings, timeout rate and mean latency (ping-post partners only)."""
    rows = (
        funnel_rows(filters)
        .filter(pings__gt=0)
        .values("partner_id", "partner__name")
        .annotate(
            pings_sum=Sum("pings"),
            timeouts=Sum("ping_timeouts"),
            latency=Sum("ping_latency_ms_sum"),
        )
        .order_by("partner__name")
    )
    return [
        {
            "partner": row["partner__name"],
            "pings": int(row["pings_sum"]),
            "timeout_rate": _rate(int(row["timeouts"]), int(row["pings_sum"])),
            "mean_ms": _rate(int(row["latency"]), int(row["pings_sum"])),
        }
        for row in rows
    ]


def delivery_failures(filters: Filters) -> list[dict[str, Any]]:
    """Partners whose posts failed in the range, most failures first."""
    rows = (
        funnel_rows(filters)
        .filter(delivery_failures__gt=0)
        .values("partner_id", "partner__name")
        .annotate(failures=Sum("delivery_failures"), delivered=Sum("delivered"))
        .order_by("-failures", "partner__name")
    )
    return [
        {
            "partner_id": row["partner_id"],
            "partner": row["partner__name"],
            "failures": int(row["failures"]),
            "delivered": int(row["delivered"] or 0),
        }
        for row in rows
    ]


def cap_usage(*, today: date, is_sandbox: bool, limit: int = 25) -> list[dict[str, Any]]:
    """Today's leads against each capped product's daily cap, fullest first (the aggregate
    is at most a rollup interval behind the counts routing decides caps by)."""
    capped = {
        product.id: product
        for product in Product.objects.filter(daily_cap__isnull=False).select_related("partner")
    }
    used = dict(
        DailyFunnel.objects.filter(day=today, is_sandbox=is_sandbox, product_id__in=capped)
        .order_by()
        .values_list("product_id")
        .annotate(n=Sum("matched"))
    )
    rows: list[dict[str, Any]] = [
        {
            "product": f"{product.partner.name} / {product.name}",
            "used": int(used.get(product_id) or 0),
            "cap": int(product.daily_cap or 0),
        }
        for product_id, product in capped.items()
    ]
    for row in rows:
        row["share"] = _rate(row["used"], row["cap"])
    rows.sort(key=lambda row: (-(row["share"] or 0), row["product"]))
    return rows[:limit]


def revenue(filters: Filters) -> dict[str, Any]:
    """Net revenue by fee type and currency, per day, and earnings per delivered lead (live
    traffic; revenue is kept per partner, so only the partner filter applies to it)."""
    rows = DailyRevenue.objects.filter(day__gte=filters.start, day__lte=filters.end)
    if filters.partner_id:
        rows = rows.filter(partner_id=filters.partner_id)
    by_type: list[dict[str, Any]] = [
        # To the cent: SQLite sums decimals as binary floats (exact on PostgreSQL).
        {"fee_type": row["fee_type"], "currency": row["currency"], "amount": to_cents(row["total"])}
        for row in rows.order_by()
        .values("fee_type", "currency")
        .annotate(total=Sum("amount"))
        .order_by("currency", "fee_type")
    ]
    per_currency: dict[str, Decimal] = {}
    for row in by_type:
        per_currency[row["currency"]] = (
            per_currency.get(row["currency"], Decimal(0)) + row["amount"]
        )
    live = Filters(start=filters.start, end=filters.end, partner_id=filters.partner_id)
    delivered = int(funnel_rows(live).aggregate(n=Sum("delivered"))["n"] or 0)
    earnings = {
        currency: to_cents(total / delivered) if delivered else None
        for currency, total in per_currency.items()
    }
    daily: dict[str, dict[str, dict[str, str]]] = {}
    for day_row in (
        rows.order_by().values("day", "fee_type", "currency").annotate(total=Sum("amount"))
    ):
        cell = daily.setdefault(day_row["currency"], {}).setdefault(day_row["fee_type"], {})
        cell[day_row["day"].isoformat()] = str(to_cents(day_row["total"]))
    return {
        "by_type": by_type,
        "totals": per_currency,
        "earnings_per_lead": earnings,
        "daily": daily,
        "delivered": delivered,
    }


def _share(value: float | None) -> str:
    return "–" if value is None else f"{value:.1%}"


def _money(value: float | None) -> str:
    return "–" if value is None else f"{value:,.2f}"


def _interval(values: list[float | None] | None, *, percent: bool) -> str:
    """As the lab's experiment page shows an interval: estimate [low, high], a star when
    it excludes zero; "not enough data" while an end is open."""
    if values is None:
        return "–"
    estimate, low, high = values
    if low is None or high is None or estimate is None:
        return "not enough data"
    show = _share if percent else _money
    star = " *" if low > 0 or high < 0 else ""
    return f"{show(estimate)} [{show(low)}, {show(high)}]{star}"


def _arm_figures(arm: dict[str, Any]) -> dict[str, Any]:
    referrals = int(arm["referrals"])
    funnel = arm["funnel"]
    return {
        "referrals": referrals,
        "funnel": [
            (
                stage,
                int(funnel.get(stage, 0)),
                _share(funnel.get(stage, 0) / referrals if referrals else None),
            )
            for stage in LAB_STAGES
        ],
        "conversion": _interval(arm["conversion"], percent=True),
        "conversion_lift": "control"
        if arm["is_control"]
        else _interval(arm["conversion_lift"], percent=True),
        "revenue_per_referral": _money(arm["revenue_per_referral"]),
        "revenue": _interval(arm["revenue"], percent=False),
        "revenue_lift": "control"
        if arm["is_control"]
        else _interval(arm["revenue_lift"], percent=False),
    }


def running_experiments(limit: int = 10) -> list[dict[str, Any]]:
    """Running strategy-lab experiments with their arms side by side: key, control,
    weight, strategy version, and the lab's own per-arm figures (funnel, conversion and
    revenue per referral with their always-valid intervals, lift against control) as
    ``billing.lab_figures`` stored them from the lab's results: one small table read, not
    the experiment's raw rows. Figures of an older bucket version (the experiment was
    restarted since) are not shown."""
    found = list(
        Experiment.objects.filter(status=ExperimentStatus.RUNNING)
        .prefetch_related("arms__strategy_version__strategy")
        .order_by("-started_at")[:limit]
    )
    stored = {
        row.experiment_id: row
        for row in ExperimentFigures.objects.filter(
            experiment__in=found, bucket_version=F("experiment__bucket_version")
        )
    }
    experiments = []
    for experiment in found:
        row = stored.get(experiment.pk)
        by_key = {arm["key"]: arm for arm in row.arms} if row is not None else {}
        arms = sorted(experiment.arms.all(), key=lambda arm: (not arm.is_control, arm.key))
        strategy = {arm.pk: arm.strategy_version for arm in arms}
        experiments.append(
            {
                "id": experiment.pk,
                "name": experiment.name,
                "key": experiment.key,
                "started_at": experiment.started_at,
                "primary_metric": experiment.get_primary_metric_display(),
                "figures": row,
                "confidence": f"{100 * (1 - float(experiment.alpha)):g}",
                "arms": [
                    {
                        "key": arm.key,
                        "is_control": arm.is_control,
                        "weight": arm.weight,
                        "strategy": f"{strategy[arm.pk].strategy} v{strategy[arm.pk].version}",
                        "figures": _arm_figures(by_key[arm.key]) if arm.key in by_key else None,
                    }
                    for arm in arms
                ],
            }
        )
    return experiments
