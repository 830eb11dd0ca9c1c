"""Row locks on the routing path, the one order they are taken in, and what is decided
under them: dedupe windows. (Volume caps and budgets are cap counters taken by
compare-and-set, ``marketplace.caps``; their rows sit in the product and partner places
of the order below.)

Lock order (every transaction that takes more than one of these takes them in this order;
a transaction may skip any):

    (its own auction / lead) -> subject -> product -> partner -> grant -> ledger

- *auction / lead*: the row a worker owns (an auction being awarded, a lead being posted
  or reported on). Only its own transaction locks it, and before anything else.
- *subject* (the applicant's vault row): intake updates it first (``consent.vault``,
  refreshing the encrypted values), so every intake of one person and every award for that
  person (:func:`lock_person`) are serialised: the dedupe window is decided by one of them
  at a time. The issue's list named product first; the subject cannot follow the products
  because intake writes it before it knows which products match.
- *product*: the products' cap counters an award takes (``marketplace.caps.reserve``:
  their day, month and budget counters, in product id order; never the product rows
  themselves), so concurrent intakes and awards count a product's leads one after the
  other.
- *partner*: the partners' budget counters an award takes (in partner id order); the
  partner rows themselves only billing's holds touch, never the routing path.
- *grant*, then *ledger*: the consent gate (``consent.gate.disclose``, ``grants``).

Two rules keep the locks to what is meant:

1. ``FOR NO KEY UPDATE``, never ``FOR UPDATE``, on rows other rows point at (subject,
   product, partner, grant, lead). PostgreSQL checks a foreign key (deferred by Django to
   commit) with ``FOR KEY SHARE`` on the row pointed at, which waits for a ``FOR UPDATE``
   holder: a disclosure committing while an intake held the applicant's subject ``FOR
   UPDATE`` (or a partner row its product lock had joined) waited on it while the intake
   waited on the ledger the disclosure held: a deadlock.
2. A lock names its own table (``of=("self",)``) and clears the model's ordering
   (``order_by("id")``): ``Product.Meta.ordering`` by partner name made the cap lock a
   join that also locked every capped product's partner row.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import timedelta

from django.utils import timezone

from consent.models import Subject
from marketplace.models import Lead


def lock_person(subject_id: uuid.UUID) -> None:
    """Hold the applicant's vault row to commit: dedupe decisions for one person are made
    one at a time (intake already holds it from ``consent.vault.store_subject``)."""
    list(
        Subject.objects.select_for_update(no_key=True, of=("self",))
        .filter(pk=subject_id)
        .order_by()
        .values_list("id")
    )


def recently_received(
    *, subject_id: uuid.UUID, is_sandbox: bool, windows: Mapping[uuid.UUID, int]
) -> set[uuid.UUID]:
    """Partners (keys of ``windows``, partner id -> dedupe days) that already got this
    person within their window, in this mode: a sandbox lead never keeps a live one from a
    partner, nor the reverse. (Subjects are per mode already; the mode is stated here too
    because a subject stored before that split may hold leads of both modes.) Decide it
    under :func:`lock_person`."""
    windows = {partner: days for partner, days in windows.items() if days}
    if not windows:
        return set()
    now = timezone.now()
    recent = Lead.objects.filter(
        subject_id=subject_id,
        is_sandbox=is_sandbox,
        partner_id__in=windows,
        created_at__gte=now - timedelta(days=max(windows.values())),
    ).values_list("partner_id", "created_at")
    return {
        partner_id
        for partner_id, created_at in recent
        if created_at >= now - timedelta(days=windows[partner_id])
    }
