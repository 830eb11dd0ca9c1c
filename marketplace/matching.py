"""Which products' credit boxes fit an application. Pure functions over plain data.

``ProductIndex`` holds every active product's box in memory, rebuilt when the catalogue's
version changes, so matching an application costs no database query.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal

from django.db.models import Count, Max

from partners.holds import without_holds
from partners.models import PartnerStatus, Product


@dataclass(frozen=True, slots=True)
class CreditBox:
    product_id: uuid.UUID
    partner_id: uuid.UUID
    min_amount: Decimal
    max_amount: Decimal
    min_term: int
    max_term: int
    tiers: frozenset[str]
    regions: frozenset[str]  # empty: everywhere
    excluded_regions: frozenset[str]
    min_age: int
    max_age: int
    min_income: Decimal
    employment_types: frozenset[str]  # empty: any
    purposes: frozenset[str]
    channels: frozenset[str]
    apr_min: Decimal
    apr_max: Decimal
    delivery_mode: str
    exclusive: bool
    dedupe_days: int
    daily_cap: int | None
    monthly_cap: int | None
    partner_sandbox: bool
    # Shared products: the most partners a shared lead may go to with this one among them.
    max_shared: int | None = None


@dataclass(frozen=True, slots=True)
class Application:
    amount: Decimal
    term_months: int
    risk_tier: str
    region: str
    age: int
    income_floor: Decimal
    employment_type: str
    purpose: str
    channel: str


def fits(box: CreditBox, app: Application, *, apr_cap: Decimal) -> bool:
    """True when the box accepts the application and its cheapest APR is within the cap."""
    return (
        box.min_amount <= app.amount <= box.max_amount
        and box.min_term <= app.term_months <= box.max_term
        and app.risk_tier in box.tiers
        and (not box.regions or app.region in box.regions)
        and app.region not in box.excluded_regions
        and box.min_age <= app.age <= box.max_age
        and app.income_floor >= box.min_income
        and (not box.employment_types or app.employment_type in box.employment_types)
        and (not box.purposes or app.purpose in box.purposes)
        and (not box.channels or app.channel in box.channels)
        # A product whose whole APR range is above the cap can never be offered lawfully.
        and box.apr_min <= apr_cap
    )


def match(boxes: Iterable[CreditBox], app: Application, *, apr_cap: Decimal) -> list[CreditBox]:
    return [box for box in boxes if fits(box, app, apr_cap=apr_cap)]


def box_from_product(product: Product) -> CreditBox:
    return CreditBox(
        product_id=product.id,
        partner_id=product.partner_id,
        min_amount=product.min_amount,
        max_amount=product.max_amount,
        min_term=product.min_term_months,
        max_term=product.max_term_months,
        tiers=frozenset(product.risk_tiers),
        regions=frozenset(product.regions),
        excluded_regions=frozenset(product.excluded_regions),
        min_age=product.min_age,
        max_age=product.max_age,
        min_income=product.min_monthly_income,
        employment_types=frozenset(product.employment_types),
        purposes=frozenset(product.purposes),
        channels=frozenset(product.channels),
        apr_min=product.apr_min,
        apr_max=product.apr_max,
        delivery_mode=product.delivery_mode,
        exclusive=product.exclusive,
        dedupe_days=product.dedupe_days,
        daily_cap=product.daily_cap,
        monthly_cap=product.monthly_cap,
        partner_sandbox=product.partner.status == PartnerStatus.SANDBOX,
        max_shared=product.max_shared_partners,
    )


class ProductIndex:
    """Per-process cache of routable credit boxes, keyed by the catalogue's version."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._version: tuple[object, ...] | None = None
        self._boxes: tuple[CreditBox, ...] = ()

    def boxes(self) -> tuple[CreditBox, ...]:
        # One cheap aggregate tells whether anything changed (a product edited, a partner
        # paused: partner status changes are counted through the filtered row count). A
        # routing hold placed or lifted bumps its partner's or product's updated_at
        # (partners.holds), so holds need no term of their own here.
        query = Product.objects.filter(
            is_active=True,
            partner__status__in=[PartnerStatus.LIVE, PartnerStatus.SANDBOX],
        )
        stats = query.aggregate(n=Count("id"), p=Max("updated_at"), q=Max("partner__updated_at"))
        version = (stats["n"], stats["p"], stats["q"])
        if version != self._version:
            with self._lock:
                if version != self._version:
                    products = without_holds(query).select_related("partner")
                    self._boxes = tuple(box_from_product(p) for p in products)
                    self._version = version
        return self._boxes


product_index = ProductIndex()
