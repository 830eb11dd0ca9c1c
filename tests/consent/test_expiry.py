"""Expired consent becomes part of the auditable history, once."""

from __future__ import annotations

import json
from datetime import timedelta

from django.utils import timezone

from consent import grants, sequencer
from consent.ledger import verify_ledger
from consent.models import LedgerEntry


def _expired_entries() -> list[dict[str, object]]:
    sequencer.sequence_pending()
    rows = LedgerEntry.objects.filter(kind="consent.expired").values_list("canonical", flat=True)
    return [json.loads(row)["data"] for row in rows]


def test_an_expired_grant_is_recorded_in_the_ledger_once(make_grant) -> None:
    now = timezone.now()
    expired = make_grant(collected_at=now - timedelta(days=400), expires_at=now - timedelta(days=1))
    live = make_grant()

    assert grants.record_expiries() == 1
    assert grants.record_expiries() == 0

    (entry,) = _expired_entries()
    assert entry["receipt_id"] == str(expired.id)
    assert entry["subject_id"] == str(expired.subject_id)
    live.refresh_from_db()
    assert live.expiry_logged_at is None
    assert verify_ledger().ok


def test_a_withdrawn_grant_that_expires_later_gets_no_expiry_entry(make_grant) -> None:
    now = timezone.now()
    grant = make_grant(collected_at=now - timedelta(days=10), expires_at=now + timedelta(days=1))
    grants.withdraw(grant_id=grant.id, channel="api")

    assert grants.record_expiries(now=now + timedelta(days=2)) == 0
    assert _expired_entries() == []
    grant.refresh_from_db()
    assert grant.expiry_logged_at is not None  # looked at, nothing to record


def test_expiry_is_recorded_only_when_the_time_has_come(make_grant) -> None:
    now = timezone.now()
    grant = make_grant(expires_at=now + timedelta(hours=1))

    assert grants.record_expiries(now=now) == 0
    assert grants.record_expiries(now=now + timedelta(hours=2)) == 1
    grant.refresh_from_db()
    assert grant.expiry_logged_at == now + timedelta(hours=2)
