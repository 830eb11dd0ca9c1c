"""Which products' credit boxes fit an application. Pure functions over plain data.

``fits`` is the rule, and ``match`` over plain boxes the reference scan. ``ProductIndex``
holds every active product's box in memory, compiled into a ``marketplace.box_index.BoxIndex``
(per-criterion bitsets: an application costs a lookup per criterion plus its matches, not a
comparison per product), kept current when the catalogue's version (``partners.models.
CatalogueVersion``, bumped by the database with every product, partner or hold change) moves,
by reloading only the boxes changed since (``partners.models.CatalogueChange``), so matching
an application costs one primary-key read. ``match`` given that index answers from
it: the same boxes in the same order as the scan (a hypothesis property test holds them equal).
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Protocol

from django.conf import settings
from django.db.models import Q, QuerySet
from django.db.models.functions import Now

from marketplace.box_index import BoxIndex
from partners.all_in_cost import worst_all_in_cost
from partners.holds import without_holds
from partners.models import CatalogueChange, CatalogueVersion, PartnerStatus, Product


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
    # Worst-case all-in annual cost, APR plus fees (partners.all_in_cost); None: no fees
    # known, the top of the APR range.
    all_in_cost: Decimal | None = None


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
        all_in_cost=worst_all_in_cost(
            apr_max=product.apr_max,
            upfront_fee_rate=product.upfront_fee_rate,
            monthly_fee_rate=product.monthly_fee_rate,
            min_term=product.min_term_months,
            max_term=product.max_term_months,
        ),
    )


class ProductIndex:
    """Per-process cache of routable credit boxes, keyed by the catalogue's version.

    When the version moves, the index reloads only the boxes of the partners and products
    changed since it last looked (``partners.models.CatalogueChange``, written at commit by
    the catalogue triggers) and revises itself (``BoxIndex.revised``), rather than reading
    and compiling every product again. Changes are read from a little before the last look
    (``OVERLAP``): a transaction stamps its changes just before it commits, so one can
    become visible after a look that began later; reloading a box twice is harmless. The
    whole catalogue is read again on the first look, after a long pause (``STALE_AFTER``,
    well within the changes' retention), after a burst of changes (``MAX_CHANGES``), and
    where ``PRODUCT_INDEX_INCREMENTAL`` is off: SQLite, whose triggers run at once rather
    than at commit, so a rolled-back change could have been seen (the version then moves
    back and the full read repairs it, as before)."""

    OVERLAP = timedelta(seconds=60)
    STALE_AFTER = timedelta(minutes=30)
    MAX_CHANGES = 500

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._version: int | None = None
        self._boxes: BoxIndex[CreditBox] = BoxIndex(())
        self._by_product: dict[uuid.UUID, CreditBox] = {}
        self._looked_at: datetime | None = None  # the database's clock at the last look
        self.full_reads = 0  # (for tests and benchmarks: how the index was kept current)
        self.revisions = 0

    def boxes(self) -> BoxIndex[CreditBox]:
        """The routable boxes, compiled for ``match``; a sequence of ``CreditBox`` too."""
        return self.current()[0]

    def current(self) -> tuple[BoxIndex[CreditBox], int | None]:
        """The routable boxes and the catalogue version read for them (None: no version
        row), which routing's other per-version caches key on (``partners.catalogue_cache``)."""
        version = CatalogueVersion.objects.filter(id=1).values_list("version", flat=True).first()
        if version is None or version != self._version:
            # (No version row, e.g. a test database flushed: rebuild every time.) Read the
            # products after the version: a change committed in between only makes the
            # next read rebuild once more.
            with self._lock:
                if version is None or version != self._version:
                    # Without a version row (a flushed database) changes cannot be trusted
                    # to be complete either: read everything.
                    self._refresh(settings.PRODUCT_INDEX_INCREMENTAL and version is not None)
                    self._version = version
        return self._boxes, version

    def _refresh(self, incremental: bool) -> None:
        now = None
        if incremental:
            now = CatalogueVersion.objects.annotate(now=Now()).values_list("now", flat=True)[0]
        # A full read made without watching changes is no base to revise from later.
        looked_at, self._looked_at = self._looked_at, now
        if (
            incremental
            and now is not None
            and looked_at is not None
            and now - looked_at < self.STALE_AFTER
        ):
            changed = list(
                CatalogueChange.objects.filter(
                    changed_at__gte=looked_at - self.OVERLAP
                ).values_list("partner_id", "product_id")[: self.MAX_CHANGES + 1]
            )
            if len(changed) <= self.MAX_CHANGES:
                self._revise(
                    partners={partner for partner, _ in changed},
                    products={product for _, product in changed if product is not None},
                )
                return
        # Compiled whole: the first look, or too much changed to revise.
        self._set(BoxIndex(box_from_product(p) for p in self._routable(Product.objects.all())))
        self.full_reads += 1

    def _revise(self, *, partners: set[uuid.UUID], products: set[uuid.UUID]) -> None:
        if not partners and not products:
            return
        reloaded = self._routable(
            Product.objects.filter(Q(partner_id__in=partners) | Q(id__in=products))
        )
        self._set(
            self._boxes.revised(
                remove=lambda box: box.partner_id in partners or box.product_id in products,
                add=[box_from_product(p) for p in reloaded],
                check=_fits,
            )
        )
        self.revisions += 1

    @staticmethod
    def _routable(products: QuerySet[Product]) -> QuerySet[Product]:
        query = products.filter(
            is_active=True, partner__status__in=[PartnerStatus.LIVE, PartnerStatus.SANDBOX]
        )
        return without_holds(query).select_related("partner")

    def _set(self, boxes: BoxIndex[CreditBox]) -> None:
        self._boxes = boxes
        self._by_product = {box.product_id: box for box in boxes}

    def boxes_of(self, items: Iterable[HasProduct]) -> list[CreditBox]:
        """The cached boxes of these items' products (those still in the index)."""
        return [box for item in items if (box := self._by_product.get(item.product_id)) is not None]


def _fits(box: CreditBox, app: Application, apr_cap: Decimal) -> bool:
    return fits(box, app, apr_cap=apr_cap)


product_index = ProductIndex()
