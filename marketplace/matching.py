"""Which products' credit boxes fit an application. Pure functions over plain data.

``fits`` is the rule, and ``match`` over plain boxes the reference scan. ``ProductIndex``
holds every active product's box in memory, compiled into a ``marketplace.box_index.BoxIndex``
(per-criterion bitsets: an application costs a lookup per criterion plus its matches, not a
comparison per product), rebuilt when the catalogue's version (``partners.models.
CatalogueVersion``, bumped by the database with every product, partner or hold change) moves,
so matching an application costs one primary-key read. ``match`` given that index answers from
it: the same boxes in the same order as the scan (a hypothesis property test holds them equal).
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import Protocol

from marketplace.box_index import BoxIndex
from partners.holds import without_holds
from partners.models import CatalogueVersion, PartnerStatus, Product


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
    partner_name: str = ""


class HasProduct(Protocol):
    product_id: uuid.UUID


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
    """The boxes that fit, in the given order: from the compiled index when given one
    (``ProductIndex.boxes``), else by ``fits`` over every box."""
    if isinstance(boxes, BoxIndex):
        return boxes.match(app, apr_cap=apr_cap)
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
        partner_name=product.partner.name,
    )


class ProductIndex:
    """Per-process cache of routable credit boxes, keyed by the catalogue's version."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._version: int | None = None
        self._boxes: BoxIndex[CreditBox] = BoxIndex(())
        self._by_product: dict[uuid.UUID, CreditBox] = {}

    def boxes(self) -> BoxIndex[CreditBox]:
        """The routable boxes, compiled for ``match``; a sequence of ``CreditBox`` too."""
        version = CatalogueVersion.objects.filter(id=1).values_list("version", flat=True).first()
        if version is None or version != self._version:
            # (No version row, e.g. a test database flushed: rebuild every time.) Read the
            # products after the version: a change committed in between only makes the
            # next read rebuild once more.
            with self._lock:
                if version is None or version != self._version:
                    query = Product.objects.filter(
                        is_active=True,
                        partner__status__in=[PartnerStatus.LIVE, PartnerStatus.SANDBOX],
                    )
                    products = without_holds(query).select_related("partner")
                    # Compiled whole: the version says that something changed, not what.
                    self._boxes = BoxIndex(box_from_product(p) for p in products)
                    self._by_product = {box.product_id: box for box in self._boxes}
                    self._version = version
        return self._boxes

    def boxes_of(self, items: Iterable[HasProduct]) -> list[CreditBox]:
        """The cached boxes of these items' products (those still in the index)."""
        return [box for item in items if (box := self._by_product.get(item.product_id)) is not None]


product_index = ProductIndex()
