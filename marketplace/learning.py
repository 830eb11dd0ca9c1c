"""Learning conversion rates from what partners do with their leads.

Per product and segment (``marketplace.bands.segment_key``: risk tier, channel, amount
band), four Beta-Binomial posteriors: P(accept | delivered), P(approve | accepted),
P(fund | approved) and the return rate P(returned | accepted).

- **Counting** (:func:`lead_outcomes`, pure): which stages a lead is a decided trial of,
  and whether it succeeded. A stage is decided by the partner's word (an event, a post
  rejected) or by silence: a lead created on day d that has not reached a stage by day
  d + ``MATURITY_DAYS[stage]`` + 1 counts as a failure of it (partners report funding,
  rarely its absence). Undecided leads are left out rather than counted as failures.
- **Counts table** (``ConversionCounts``, one row per product, segment, stage and lead
  creation day): :func:`refresh_counts`, run by beat every minute, recomputes whole
  (product, day) buckets, those of leads changed (a status moved, an event received)
  since the watermark and those days crossing a maturity boundary, so running it twice
  or overlapping changes nothing.
- **Reading** (:data:`inputs`): routing never scans leads. Each process caches the
  counts of the last ``WINDOW_DAYS`` summed per product and segment, the products'
  expectations and fee cards, reloaded every ``LEARNING_CACHE_SECONDS``.
- **Priors** (:func:`funnel`, pure): the product's configured expectations (cold start:
  alpha = rate x strength, beta = (1 - rate) x strength) updated by the product's counts
  over all segments give the product's posterior; its mean, at the same strength, is the
  prior of each segment, updated by the segment's own counts (a segment with little
  evidence leans on the product's).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.db import transaction
from django.db.models import Sum
from django.utils import timezone

from marketplace.bands import segment_key
from marketplace.models import (
    ConversionCounts,
    EventType,
    Lead,
    LeadEvent,
    LeadStatus,
    LearningWatermark,
    ProductFeeCard,
    Stage,
)
from marketplace.ranking import FeeCard, Funnel, prior
from partners.models import Product

STAGES = (Stage.ACCEPT, Stage.APPROVE, Stage.FUND, Stage.RETURN)
# Days after its creation day by which a lead's silence decides a stage: partners answer
# a post within hours, underwrite within two weeks, fund within a month; the return
# window is 7 days (DOMAIN.md), counted here with a few days' slack.
MATURITY_DAYS: dict[str, int] = {
    Stage.ACCEPT: 3,
    Stage.APPROVE: 14,
    Stage.FUND: 30,
    Stage.RETURN: 10,
}
# Evidence older than this is forgotten (partners change their appetite).
WINDOW_DAYS = 90
# Changes committed this long after they were stamped are still found (the watermark
# looks back this far; recomputing a bucket twice is harmless).
COMMIT_LAG = timedelta(minutes=2)
# Statuses in which the partner has seen the lead (a post it rejected included).
SEEN = {
    LeadStatus.DELIVERED,
    LeadStatus.POST_REJECTED,
    LeadStatus.ACCEPTED,
    LeadStatus.REJECTED,
    LeadStatus.APPROVED,
    LeadStatus.FUNDED,
    LeadStatus.RETURNED,
}
ACCEPTED_EVENTS = {EventType.ACCEPTED, EventType.APPROVED, EventType.FUNDED, EventType.RETURNED}


@dataclass(frozen=True, slots=True)
class LeadFacts:
    """What counting needs of one lead: its status, creation day and standing (not
    reversed) event types."""

    status: str
    created_on: date
    events: frozenset[str]


def lead_outcomes(facts: LeadFacts, *, today: date) -> list[tuple[str, bool]]:
    """The stages this lead is a decided trial of, each with whether it succeeded."""

    def matured(stage: str) -> bool:
        return today > facts.created_on + timedelta(days=MATURITY_DAYS[stage])

    seen = facts.status in SEEN or bool(facts.events)
    if not seen:
        return []
    accepted = bool(facts.events & ACCEPTED_EVENTS)
    approved = bool(facts.events & {EventType.APPROVED, EventType.FUNDED})
    rejected = EventType.REJECTED in facts.events
    outcomes: list[tuple[str, bool]] = []
    if accepted:
        outcomes.append((Stage.ACCEPT, True))
    elif facts.status == LeadStatus.POST_REJECTED or rejected or matured(Stage.ACCEPT):
        outcomes.append((Stage.ACCEPT, False))
        return outcomes
    else:
        return outcomes
    returned = EventType.RETURNED in facts.events
    if returned or matured(Stage.RETURN):
        outcomes.append((Stage.RETURN, returned))
    if approved:
        outcomes.append((Stage.APPROVE, True))
    elif rejected or matured(Stage.APPROVE):
        outcomes.append((Stage.APPROVE, False))
        return outcomes
    else:
        return outcomes
    funded = EventType.FUNDED in facts.events
    if funded or matured(Stage.FUND):
        outcomes.append((Stage.FUND, funded))
    return outcomes


# (trials, successes) per stage
StageCounts = dict[str, tuple[int, int]]


@dataclass(frozen=True, slots=True)
class Expectation:
    """A product's configured rates and their weight (``partners.Product`` fields)."""

    accept: float = 0.80
    approve: float = 0.55
    fund: float = 0.85
    returned: float = 0.05
    strength: float = 20.0

    def rate(self, stage: str) -> float:
        rates: dict[str, float] = {
            Stage.ACCEPT: self.accept,
            Stage.APPROVE: self.approve,
            Stage.FUND: self.fund,
            Stage.RETURN: self.returned,
        }
        return rates[stage]


def funnel(
    expectation: Expectation, *, product_counts: StageCounts, segment_counts: StageCounts
) -> Funnel:
    """The posteriors of one product in one segment (see the module's docstring)."""
    stages = []
    for stage in STAGES:
        product = prior(rate=expectation.rate(stage), strength=expectation.strength)
        trials, successes = product_counts.get(stage, (0, 0))
        product = product.updated(trials=trials, successes=successes)
        segment = prior(rate=product.mean, strength=expectation.strength)
        trials, successes = segment_counts.get(stage, (0, 0))
        stages.append(segment.updated(trials=trials, successes=successes))
    return Funnel(accept=stages[0], approve=stages[1], fund=stages[2], returned=stages[3])


@dataclass
class Counts:
    """Counts per product and per (product, segment), summed over days: what ranking
    reads. Also the learner of in-process simulations (``add``)."""

    by_segment: dict[tuple[uuid.UUID, str], dict[str, list[int]]] = field(
        default_factory=lambda: defaultdict(lambda: defaultdict(lambda: [0, 0]))
    )
    by_product: dict[uuid.UUID, dict[str, list[int]]] = field(
        default_factory=lambda: defaultdict(lambda: defaultdict(lambda: [0, 0]))
    )

    def add(
        self, *, product_id: uuid.UUID, segment: str, stage: str, trials: int, successes: int
    ) -> None:
        for bucket in (self.by_segment[(product_id, segment)], self.by_product[product_id]):
            bucket[stage][0] += trials
            bucket[stage][1] += successes

    def product(self, product_id: uuid.UUID) -> StageCounts:
        found = self.by_product.get(product_id)
        return {k: (v[0], v[1]) for k, v in found.items()} if found else {}

    def segment(self, product_id: uuid.UUID, segment: str) -> StageCounts:
        found = self.by_segment.get((product_id, segment))
        return {k: (v[0], v[1]) for k, v in found.items()} if found else {}


@dataclass
class RankingInputs:
    """One process's snapshot of what ranking needs."""

    counts: Counts
    expectations: dict[uuid.UUID, Expectation]
    cards: dict[uuid.UUID, FeeCard]

    def funnel(self, product_id: uuid.UUID, segment: str) -> Funnel:
        return funnel(
            self.expectations.get(product_id, Expectation()),
            product_counts=self.counts.product(product_id),
            segment_counts=self.counts.segment(product_id, segment),
        )

    def card(self, product_id: uuid.UUID) -> FeeCard | None:
        return self.cards.get(product_id)


def expectation_of(row: Mapping[str, object]) -> Expectation:
    def rate(name: str) -> float:
        return float(Decimal(str(row[name])))

    return Expectation(
        accept=rate("expected_accept_rate"),
        approve=rate("expected_approve_rate"),
        fund=rate("expected_fund_rate"),
        returned=rate("expected_return_rate"),
        strength=float(Decimal(str(row["prior_strength"]))),
    )


def card_of(row: ProductFeeCard) -> FeeCard:
    return FeeCard(
        currency=row.currency,
        cpl=row.cpl,
        cpa=row.cpa,
        cpf_rate=row.cpf_rate,
        cpf_min=row.cpf_min,
        cpf_max=row.cpf_max,
        to_platform=row.to_platform,
    )


def load_inputs(*, today: date | None = None) -> RankingInputs:
    """Three queries: the counts of the window summed per product, segment and stage; the
    products' expectations; the fee cards."""
    since = (today or timezone.now().date()) - timedelta(days=WINDOW_DAYS)
    counts = Counts()
    rows = (
        ConversionCounts.objects.filter(day__gte=since)
        .values("product_id", "segment", "stage")
        .annotate(t=Sum("trials"), s=Sum("successes"))
        .order_by()
    )
    for row in rows:
        counts.add(
            product_id=row["product_id"],
            segment=row["segment"],
            stage=row["stage"],
            trials=row["t"],
            successes=row["s"],
        )
    expectations = {
        row["id"]: expectation_of(row)
        for row in Product.objects.filter(is_active=True).values(
            "id",
            "expected_accept_rate",
            "expected_approve_rate",
            "expected_fund_rate",
            "expected_return_rate",
            "prior_strength",
        )
    }
    cards = {card.product_id: card_of(card) for card in ProductFeeCard.objects.all()}
    return RankingInputs(counts=counts, expectations=expectations, cards=cards)


class InputsCache:
    """Per-process cache of :func:`load_inputs`, reloaded when older than
    ``settings.LEARNING_CACHE_SECONDS`` (counts move once a minute anyway) or after
    :meth:`invalidate` (this process wrote counts or a fee card)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._inputs: RankingInputs | None = None
        self._loaded_at = 0.0

    def get(self) -> RankingInputs:
        ttl = float(settings.LEARNING_CACHE_SECONDS)
        inputs = self._inputs
        if inputs is None or time.monotonic() - self._loaded_at > ttl:
            with self._lock:
                if self._inputs is None or time.monotonic() - self._loaded_at > ttl:
                    self._inputs = load_inputs()
                    self._loaded_at = time.monotonic()
                inputs = self._inputs
        return inputs

    def invalidate(self) -> None:
        self._inputs = None


inputs = InputsCache()


# --- Refreshing the counts ------------------------------------------------------------


def _day_bounds(day: date) -> tuple[datetime, datetime]:
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    return start, start + timedelta(days=1)


def recompute_buckets(buckets: Iterable[tuple[uuid.UUID, date]], *, today: date) -> int:
    """Recompute these (product, day) buckets whole from their leads; returns the rows
    written. Idempotent: the same leads give the same rows."""
    by_day: dict[date, set[uuid.UUID]] = defaultdict(set)
    for product_id, day in buckets:
        by_day[day].add(product_id)
    written = 0
    for day, products in sorted(by_day.items()):
        start, end = _day_bounds(day)
        leads = list(
            Lead.objects.filter(product_id__in=products, created_at__gte=start, created_at__lt=end)
            .values_list(
                "id", "product_id", "status", "referral__risk_tier", "referral__channel",
                "referral__amount",
            )
            .order_by()
        )  # fmt: skip
        events: dict[uuid.UUID, set[str]] = defaultdict(set)
        for lead_id, kind in (
            LeadEvent.objects.filter(lead_id__in=[lead[0] for lead in leads])
            .filter(reversed_by__isnull=True)
            .exclude(type__in=[EventType.REVERSAL, EventType.REVENUE])
            .values_list("lead_id", "type")
        ):
            events[lead_id].add(kind)
        tally: dict[tuple[uuid.UUID, str, str], list[int]] = defaultdict(lambda: [0, 0])
        for lead_id, product_id, status, tier, channel, amount in leads:
            facts = LeadFacts(status, day, frozenset(events.get(lead_id, ())))
            segment = segment_key(risk_tier=tier, channel=channel, amount=amount)
            for stage, success in lead_outcomes(facts, today=today):
                cell = tally[(product_id, segment, stage)]
                cell[0] += 1
                cell[1] += int(success)
        rows = [
            ConversionCounts(
                product_id=product_id, segment=segment, stage=stage, day=day, trials=t, successes=s
            )
            for (product_id, segment, stage), (t, s) in tally.items()
        ]
        with transaction.atomic():
            ConversionCounts.objects.filter(product_id__in=products, day=day).delete()
            ConversionCounts.objects.bulk_create(rows)
        written += len(rows)
    return written


def _changed_buckets(since: datetime) -> set[tuple[uuid.UUID, date]]:
    """(product, day) of the leads whose status moved or that got an event since then (two
    indexed range reads: an OR across the join could not use either index)."""
    moved = Lead.objects.filter(updated_at__gte=since).values_list("product_id", "created_at")
    reported = LeadEvent.objects.filter(received_at__gte=since).values_list(
        "lead__product_id", "lead__created_at"
    )
    return {
        (product_id, created.astimezone(UTC).date()) for product_id, created in [*moved, *reported]
    }


def _maturing_buckets(after: date, through: date) -> set[tuple[uuid.UUID, date]]:
    """(product, day) of the days whose leads' silence became decisive for some stage on a
    day in (after, through]."""
    days: set[date] = set()
    for maturity in set(MATURITY_DAYS.values()):
        day = after - timedelta(days=maturity + 1)
        while day < through - timedelta(days=maturity + 1):
            day += timedelta(days=1)
            days.add(day)
    buckets: set[tuple[uuid.UUID, date]] = set()
    for day in days:
        start, end = _day_bounds(day)
        products = Lead.objects.filter(created_at__gte=start, created_at__lt=end)
        for product_id in products.values_list("product_id", flat=True).distinct().order_by():
            buckets.add((product_id, day))
    return buckets


def refresh_counts(*, now: datetime | None = None) -> int:
    """Bring the counts up to date (beat, every minute); returns the rows written. The
    first run (no watermark) counts the whole window."""
    now = now or timezone.now()
    today = now.astimezone(UTC).date()
    mark = LearningWatermark.objects.filter(id=1).first()
    if mark is None:
        since = now - timedelta(days=WINDOW_DAYS + max(MATURITY_DAYS.values()))
        buckets = _changed_buckets(since) | {
            (product_id, created.astimezone(UTC).date())
            for product_id, created in Lead.objects.filter(created_at__gte=since).values_list(
                "product_id", "created_at"
            )
        }
    else:
        buckets = _changed_buckets(mark.through - COMMIT_LAG) | _maturing_buckets(
            mark.through.astimezone(UTC).date(), today
        )
    written = recompute_buckets(buckets, today=today)
    LearningWatermark.objects.update_or_create(id=1, defaults={"through": now})
    inputs.invalidate()
    return written
