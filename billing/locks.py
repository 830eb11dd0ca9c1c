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

from billing.models import PartnerBillingProfile
from billing.periods import month_of, next_month


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
