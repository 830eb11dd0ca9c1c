"""After a scenario: wait for quiescence, then count from the database and from the
partners' own log (``demo.journal``) whether anything was lost, doubled or refused.

Every figure in :data:`MUST_BE_ZERO` is a failure when it is not 0; the rest are context.
"""

from __future__ import annotations

import json
import time
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import redis
from django.conf import settings
from django.db import close_old_connections, connections
from django.db.utils import DatabaseError
from django.utils import timezone

from billing.models import Charge
from demo.journal import read_journal
from marketplace import models as mm
from marketplace.models import (
    Auction,
    AuctionStatus,
    DeliveryAttempt,
    Lead,
    LeadEvent,
    LeadStatus,
    Referral,
)
from partners.models import MessageStatus, WebhookMessage

BILLABLE = ("accepted", "approved", "funded")
# Leads in these states are work in progress (or stuck, once the platform is quiet).
IN_FLIGHT_LEADS = {LeadStatus.MATCHED, LeadStatus.DELIVERING}
# Where the partner holds the lead: the platform must say delivered (or an outcome).
HELD_BY_PARTNER = {
    LeadStatus.DELIVERED,
    LeadStatus.ACCEPTED,
    LeadStatus.REJECTED,
    LeadStatus.APPROVED,
    LeadStatus.FUNDED,
    LeadStatus.RETURNED,
}

MUST_BE_ZERO = (
    "client_saw_5xx",
    "client_no_201",
    "referrals_extra",
    "referrals_missing",
    "referrals_not_terminal",
    "leads_in_flight",
    "auctions_pending",
    "posts_after_recorded_2xx",
    "partner_holds_lead_platform_not",
    "partner_events_refused",
    "partner_events_not_stored",
    "partner_postbacks_5xx",
    "billable_not_charged",
    "billable_charged_twice",
    "webhooks_not_delivered",
    "webhooks_not_received",
    "ledger_verify_failed",
    "reconcile_failed",
)


def terminal_referral_statuses() -> set[str]:
    """The referral states that end a referral. With the outbox's statuses (``distributed``
    and friends) ``routed`` is no longer an end: it means work is still under way."""
    values = set(mm.ReferralStatus.values)
    if "distributed" in values:
        return values & {"not_routable", "no_match", "distributed", "withdrawn"}
    return values & {"not_routable", "no_match", "routed"}


@dataclass
class Quiet:
    seconds: float
    reached: bool
    last: dict[str, int] = field(default_factory=dict)


ORPHAN_AFTER = 60.0


def _housekeeping_tasks() -> frozenset[str]:
    """Tasks beat queues on a timer (sweepers, the ledger sequencer): always a few of them
    queued or running on a live platform, so they say nothing about the scenario's work."""
    return frozenset(entry["task"] for entry in settings.CELERY_BEAT_SCHEDULE.values())


def _task_name(raw: bytes | str) -> str | None:
    """The task name in a kombu Redis message (a list item, or an ``unacked`` value:
    ``[message, exchange, routing_key]``); None when it cannot be read."""
    try:
        message = json.loads(raw)
        if isinstance(message, list):
            message = message[0]
        return str(message["headers"]["task"])
    except (ValueError, KeyError, IndexError, TypeError):
        return None


def broker_backlog(url: str) -> int:
    """Messages of the platform's work waiting in the Redis broker's queues plus those
    delivered but not acked in the last ``ORPHAN_AFTER`` seconds (kombu's ``unacked`` hash:
    tasks held by a worker, including countdown retries). Beat's periodic housekeeping
    tasks are not counted (an unreadable message is). -1 when the broker does not answer."""
    skip = _housekeeping_tasks()
    try:
        client = redis.Redis.from_url(url, socket_timeout=2)
        # Delivered more than ORPHAN_AFTER ago: held by a worker that was killed, waiting
        # for the visibility timeout to be redelivered (a no-op then, its work long done
        # by the sweepers); whether that work is pending, the database says.
        fresh = client.zrangebyscore("unacked_index", time.time() - ORPHAN_AFTER, "+inf")
        held = client.hmget("unacked", fresh) if fresh else []
        messages: list[bytes] = [m for m in held if m is not None]
        for key in client.scan_iter(count=500):
            if client.type(key) == b"list" and not key.startswith(b"_kombu"):
                messages.extend(client.lrange(key, 0, -1))
        return sum(1 for raw in messages if _task_name(raw) not in skip)
    except redis.RedisError:
        return -1


def _outbox_undone(since: datetime) -> int:
    """Outbox messages (marketplace.OutboxMessage, where the platform has one) written since
    ``since`` and not done: work the sweeper will still publish."""
    outbox = getattr(mm, "OutboxMessage", None)
    if outbox is None:
        return 0
    return int(outbox.objects.filter(created_at__gte=since, done_at__isnull=True).count())


def _pending(source_id: Any, since: datetime) -> dict[str, int]:
    referrals = Referral.objects.filter(source_id=source_id)
    leads = Lead.objects.filter(referral__source_id=source_id)
    return {
        "referrals_not_terminal": referrals.exclude(
            status__in=terminal_referral_statuses()
        ).count(),
        "leads_in_flight": leads.filter(status__in=IN_FLIGHT_LEADS).count(),
        "auctions_pending": Auction.objects.filter(
            referral__source_id=source_id, status=AuctionStatus.PENDING
        ).count(),
        "webhooks_pending": WebhookMessage.objects.filter(
            created_at__gte=since, status=MessageStatus.PENDING
        ).count(),
        "outbox_undone": _outbox_undone(since),
        "events": LeadEvent.objects.filter(lead__referral__source_id=source_id).count(),
        "charges": Charge.objects.filter(lead__referral__source_id=source_id).count(),
    }


def wait_quiet(
    *,
    source_id: Any,
    since: datetime,
    broker_url: str,
    journal: Path,
    timeout: float,
    settle: float = 6.0,
    stall: float = 75.0,
) -> Quiet:
    """Poll until nothing is pending (broker empty, no lead or auction in flight, no
    webhook pending, no referral short of terminal) and nothing changed for ``settle``
    seconds, including the partners' log; or until ``timeout``; or until the broker and
    the outbox are empty and nothing changed for ``stall`` seconds (longer than beat's
    30 s webhook sweep and the posts' first retries) although work is pending: stuck."""
    started = time.monotonic()
    previous: tuple[Any, ...] | None = None
    stable_since = time.monotonic()
    state: dict[str, int] = {}
    while time.monotonic() - started < timeout:
        close_old_connections()
        try:
            state = _pending(source_id, since)
        except DatabaseError:
            connections.close_all()
            time.sleep(1)
            continue
        state["broker_backlog"] = broker_backlog(broker_url)
        state["journal_lines"] = len(read_journal(journal))
        snapshot = tuple(sorted(state.items()))
        if snapshot != previous:
            previous, stable_since = snapshot, time.monotonic()
        idle = all(
            state[k] == 0
            for k in (
                "outbox_undone",
                "referrals_not_terminal",
                "leads_in_flight",
                "auctions_pending",
                "webhooks_pending",
                "broker_backlog",
            )
        )
        if idle and time.monotonic() - stable_since >= settle:
            return Quiet(time.monotonic() - started, True, state)
        nothing_queued = state["broker_backlog"] == 0 and state["outbox_undone"] == 0
        if nothing_queued and time.monotonic() - stable_since >= stall:
            break  # nothing queued and nothing moved: stuck, waiting longer will not help
        time.sleep(1.0)
    return Quiet(time.monotonic() - started, False, state)


def wait_books_still(
    *, source_id: Any, journal: Path, timeout: float = 60.0, still: float = 10.0
) -> bool:
    """Wait until the scenario's events and charges and the partners' log have not changed
    for ``still`` seconds (bounded): ``reconcile`` reads events and charges in separate
    queries, so an event booked between them shows up as a difference of the moment."""
    started = time.monotonic()
    previous: tuple[int, int, int] | None = None
    since = time.monotonic()
    while time.monotonic() - started < timeout:
        close_old_connections()
        now_state = (
            LeadEvent.objects.filter(lead__referral__source_id=source_id).count(),
            Charge.objects.filter(lead__referral__source_id=source_id).count(),
            len(read_journal(journal)),
        )
        if now_state != previous:
            previous, since = now_state, time.monotonic()
        elif time.monotonic() - since >= still:
            return True
        time.sleep(1.0)
    return False


# ----------------------------------------------------------------------------- counting


def _journal(path: Path) -> dict[str, list[dict[str, Any]]]:
    by_kind: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for record in read_journal(path):
        by_kind[str(record.get("kind"))].append(record)
    return by_kind


def _posts_after_recorded_2xx(
    leads: dict[str, tuple[str, str]], posts: Iterable[dict[str, Any]]
) -> tuple[int, int]:
    """(posts a partner received for a lead after the platform had recorded a 2xx answer
    from it, leads with such posts)."""
    recorded: dict[str, float] = {}
    attempts = DeliveryAttempt.objects.filter(
        lead_id__in=list(leads),
        http_status__gte=200,
        http_status__lt=300,
        outcome__in=["success", "failure"],
    ).values_list("lead_id", "started_at", "latency_ms")
    for lead_id, at, latency_ms in attempts:
        # Whether started_at is the attempt's start or the time it was recorded, the
        # answer was recorded by started_at + latency at the latest.
        key, seen = str(lead_id), at.timestamp() + latency_ms / 1000
        recorded[key] = min(recorded.get(key, seen), seen)
    late: Counter[str] = Counter()
    for post in posts:
        posted = str(post.get("lead_id"))
        if (
            posted in recorded
            and leads.get(posted, ("", ""))[0] == post.get("slug")
            and float(post["received_at"]) > recorded[posted]
        ):
            late[posted] += 1
    return sum(late.values()), len(late)


def count(
    *,
    source_id: Any,
    since: datetime,
    journal_path: Path,
    applicants: int,
    client_counts: Counter[str],
) -> dict[str, int]:
    """Every figure of the scenario (see :data:`MUST_BE_ZERO`)."""
    close_old_connections()
    out: dict[str, int] = {}
    out["client_applicants"] = applicants
    out["client_201"] = client_counts["created_201"]
    out["client_saw_5xx"] = client_counts["saw_5xx"]
    out["client_saw_no_answer"] = client_counts["saw_no_answer"]
    out["client_no_201"] = client_counts["final_not_201"]
    referrals = Referral.objects.filter(source_id=source_id)
    stored = referrals.count()
    out["referrals_stored"] = stored
    out["referrals_extra"] = max(0, stored - applicants)
    out["referrals_missing"] = max(0, applicants - stored)
    pending = _pending(source_id, since)
    out["referrals_not_terminal"] = pending["referrals_not_terminal"]
    out["leads_in_flight"] = pending["leads_in_flight"]
    out["auctions_pending"] = pending["auctions_pending"]
    out["outbox_undone"] = pending["outbox_undone"]
    leads = {
        str(lead_id): (slug, status)
        for lead_id, slug, status in Lead.objects.filter(referral__source_id=source_id).values_list(
            "id", "partner__slug", "status"
        )
    }
    out["leads"] = len(leads)
    journal = _journal(journal_path)
    _count_posts(out, leads, journal)
    _count_events(out, source_id, journal)
    _count_webhooks(out, since, journal)
    return out


def _count_posts(
    out: dict[str, int], leads: dict[str, tuple[str, str]], journal: dict[str, list[dict[str, Any]]]
) -> None:
    posts = [p for p in journal["post"] if p.get("lead_id") in leads]
    out["partner_posts_received"] = len(posts)
    out["posts_after_recorded_2xx"], out["leads_posted_after_2xx"] = _posts_after_recorded_2xx(
        leads, posts
    )
    lost = {p["lead_id"] for p in posts if p.get("decision") and p.get("answer") != p["decision"]}
    out["partner_answers_lost"] = len(lost)
    held = {p["lead_id"] for p in posts if p.get("decision") == "accept"}
    out["partner_accepted_leads"] = len(held)
    out["partner_holds_lead_platform_not"] = sum(
        1 for lead_id in held if leads[lead_id][1] not in HELD_BY_PARTNER
    )


def _count_events(
    out: dict[str, int], source_id: Any, journal: dict[str, list[dict[str, Any]]]
) -> None:
    done = [d for d in journal["postback_done"] if d.get("event_id")]
    required = [d for d in done if not d.get("duplicate")]
    out["partner_events_sent_ok"] = sum(1 for d in required if d.get("delivered"))
    out["partner_events_refused"] = sum(1 for d in required if not d.get("delivered"))
    out["partner_duplicates_sent"] = sum(1 for d in done if d.get("duplicate"))
    out["partner_postbacks_5xx"] = sum(
        1 for p in journal["postback"] if isinstance(p.get("status"), int) and p["status"] >= 500
    )
    events = LeadEvent.objects.filter(lead__referral__source_id=source_id)
    stored = set(events.values_list("external_id", flat=True))
    out["events_stored"] = len(stored)
    sent_ok = {d["event_id"] for d in required if d.get("delivered")}
    # Only events about this scenario's leads (the log is per scenario, so all of them).
    out["partner_events_not_stored"] = len(sent_ok - stored)
    billable = events.filter(type__in=BILLABLE, lead__is_sandbox=False, reversed_by__isnull=True)
    per_event = Counter(
        Charge.objects.filter(event__in=billable, entry_type="charge").values_list(
            "event_id", flat=True
        )
    )
    ids = list(billable.values_list("id", flat=True))
    out["billable_events"] = len(ids)
    out["billable_not_charged"] = sum(1 for e in ids if per_event[e] == 0)
    out["billable_charged_twice"] = sum(1 for e in ids if per_event[e] > 1)


def _count_webhooks(
    out: dict[str, int], since: datetime, journal: dict[str, list[dict[str, Any]]]
) -> None:
    messages = WebhookMessage.objects.filter(created_at__gte=since)
    out["webhooks"] = messages.count()
    delivered = set(messages.filter(status=MessageStatus.DELIVERED).values_list("id", flat=True))
    out["webhooks_not_delivered"] = out["webhooks"] - len(delivered)
    received = {w.get("webhook_id") for w in journal["webhook"]}
    out["webhooks_not_received"] = len(delivered - received)


def now() -> datetime:
    return timezone.now()
