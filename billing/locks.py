"""The partner's billing lock, and the month a new ledger entry is billed in.

Invoicing never updates ledger rows (a million UPDATEs cost far more than reading them):
an invoice bills the partner's entries whose ``period`` falls in its months. So an entry
must never land in a month that was invoiced already. Charging takes a *shared* lock on
the partner's ``PartnerBillingProfile`` row and reads ``invoiced_through``; invoicing takes
it *exclusively* while it closes a month. A charge either commits before the invoice reads
the month, or waits and then goes to the next open month: never lost, never billed twice.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime

from django.db import IntegrityError, connection, transaction

from billing.models import FeeSchedule, FeeTier, PartnerBillingProfile
from billing.periods import month_of, next_month
from billing.pricing import Tier


def _profile(partner_id: uuid.UUID) -> None:
    if not PartnerBillingProfile.objects.filter(partner_id=partner_id).exists():
        try:
            with transaction.atomic():
                PartnerBillingProfile.objects.create(partner_id=partner_id)
        except IntegrityError:
            pass  # made by a concurrent transaction meanwhile


def share_billing_lock(*, partner_id: uuid.UUID) -> date | None:
    """Lock the partner's billing row for sharing; returns ``invoiced_through``."""
    return share_billing_profile(partner_id=partner_id).invoiced_through


def share_billing_profile(*, partner_id: uuid.UUID) -> PartnerBillingProfile:
    """Lock the partner's billing row for sharing and return it (its credit limit is
    read from it too). Locked first: the row is created only when it is missing."""
    profile = _shared(partner_id)
    if profile is None:
        _profile(partner_id)
        profile = _shared(partner_id)
    assert profile is not None
    return profile


# A partner's schedules, each with its tiers (lowest threshold first).
ScheduleRows = list[tuple[FeeSchedule, tuple[Tier, ...]]]
_PROFILE_FIELDS = PartnerBillingProfile._meta.concrete_fields
_SCHEDULE_FIELDS = FeeSchedule._meta.concrete_fields
_TIER_COLUMNS = ("from_count", "cpl", "cpa", "cpf_rate")


def share_billing_profile_and_schedules(
    *, partner_id: uuid.UUID
) -> tuple[PartnerBillingProfile, ScheduleRows | None]:
    """:func:`share_billing_profile`, and on PostgreSQL the partner's fee schedules with
    their tiers read by the same statement (the live path needs both: one round trip and
    no query to compile, instead of two). None for the schedules elsewhere: the caller
    reads them (``billing.quotes.Schedules.read``)."""
    if connection.vendor != "postgresql":
        return share_billing_profile(partner_id=partner_id), None
    found = _shared_with_schedules(partner_id)
    if found is None:
        _profile(partner_id)
        found = _shared_with_schedules(partner_id)
    assert found is not None
    return found


def _shared_with_schedules(
    partner_id: uuid.UUID,
) -> tuple[PartnerBillingProfile, ScheduleRows] | None:
    quote = connection.ops.quote_name
    columns = [
        *(f"p.{quote(str(f.column))}" for f in _PROFILE_FIELDS),
        *(f"s.{quote(str(f.column))}" for f in _SCHEDULE_FIELDS),
        *(f"t.{quote(name)}" for name in _TIER_COLUMNS),
    ]
    # Names from the models' metadata only; the partner is a parameter. Only the billing
    # row is locked (the outer joins' rows are read, not locked).
    sql = (
        f"SELECT {', '.join(columns)} "  # noqa: S608
        f"FROM {quote(PartnerBillingProfile._meta.db_table)} p "
        f"LEFT JOIN {quote(FeeSchedule._meta.db_table)} s ON s.partner_id = p.partner_id "
        f"LEFT JOIN {quote(FeeTier._meta.db_table)} t ON t.schedule_id = s.id "
        "WHERE p.partner_id = %s ORDER BY s.id, t.from_count FOR SHARE OF p"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [partner_id])
        rows = cursor.fetchall()
    if not rows:
        return None
    n_profile, n_schedule = len(_PROFILE_FIELDS), len(_SCHEDULE_FIELDS)
    profile = PartnerBillingProfile.from_db(
        connection.alias, [f.attname for f in _PROFILE_FIELDS], rows[0][:n_profile]
    )
    schedules: dict[int, tuple[FeeSchedule, list[Tier]]] = {}
    for row in rows:
        values = row[n_profile : n_profile + n_schedule]
        if values[0] is None:
            continue  # the partner has no schedule
        pk = values[0]
        if pk not in schedules:
            schedule = FeeSchedule.from_db(
                connection.alias, [f.attname for f in _SCHEDULE_FIELDS], values
            )
            schedules[pk] = (schedule, [])
        from_count, cpl, cpa, cpf_rate = row[n_profile + n_schedule :]
        if from_count is not None:
            schedules[pk][1].append(Tier(from_count, cpl, cpa, cpf_rate))
    return profile, [(schedule, tuple(tiers)) for schedule, tiers in schedules.values()]


def _shared(partner_id: uuid.UUID) -> PartnerBillingProfile | None:
    if connection.vendor == "postgresql":
        rows = PartnerBillingProfile.objects.raw(
            "SELECT * FROM billing_partnerbillingprofile WHERE partner_id = %s FOR SHARE",
            [partner_id],
        )
        return next(iter(rows), None)
    # SQLite serialises every write transaction (BEGIN IMMEDIATE): no row locks needed.
    return PartnerBillingProfile.objects.filter(partner_id=partner_id).first()


def share_billing_locks(*, partner_ids: list[uuid.UUID]) -> dict[uuid.UUID, date | None]:
    """:func:`share_billing_lock` for many partners at once, in id order (no deadlocks with
    :func:`lock_billing_rows`); each partner's ``invoiced_through``."""
    ids = sorted(set(partner_ids))
    PartnerBillingProfile.objects.bulk_create(
        [PartnerBillingProfile(partner_id=pk) for pk in ids], ignore_conflicts=True
    )
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT partner_id, invoiced_through FROM billing_partnerbillingprofile "
                "WHERE partner_id = ANY(%s) ORDER BY partner_id FOR SHARE",
                [ids],
            )
            through = dict(cursor.fetchall())
    else:  # SQLite serialises every write transaction (BEGIN IMMEDIATE): no row locks.
        through = dict(
            PartnerBillingProfile.objects.filter(partner_id__in=ids).values_list(
                "partner_id", "invoiced_through"
            )
        )
    return {pk: through[pk] for pk in ids}


def hold_billing_lock(*, partner_id: uuid.UUID) -> PartnerBillingProfile:
    """Lock the partner's billing row exclusively (invoicing)."""
    _profile(partner_id)
    return PartnerBillingProfile.objects.select_for_update().get(partner_id=partner_id)


def lock_billing_rows(*, partner_ids: list[uuid.UUID]) -> list[PartnerBillingProfile]:
    """Lock many partners' billing rows exclusively, in id order (no deadlocks)."""
    PartnerBillingProfile.objects.bulk_create(
        [PartnerBillingProfile(partner_id=pk) for pk in partner_ids], ignore_conflicts=True
    )
    return list(
        PartnerBillingProfile.objects.select_for_update()
        .filter(partner_id__in=partner_ids)
        .order_by("partner_id")
    )


def period_for(*, at: datetime, invoiced_through: date | None) -> date:
    """The month an entry that happened ``at`` is billed in: its own, or the first month
    not invoiced yet when its own was (a late event). ``invoiced_through`` must be read
    under :func:`share_billing_lock`, held until the entry commits."""
    month = month_of(at)
    if invoiced_through is not None and month <= invoiced_through:
        return next_month(invoiced_through)
    return month
