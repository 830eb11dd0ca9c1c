"""The consent gate: the only way personal data leaves the vault, always logged."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable
from datetime import timedelta
from functools import partial
from typing import Any

import pytest
from django.db import connection, connections, transaction
from django.utils import timezone

from consent import gate, grants, sequencer, vault
from consent.models import (
    PII_FIELDS,
    ConsentGrant,
    ConsentWithdrawal,
    Disclosure,
    LedgerEntry,
    Subject,
)
from partners.models import Partner
from tests.concurrency import run_concurrently
from tests.consent.conftest import MakeApplicant, MakeGrant
from tests.factories import PartnerFactory

PURPOSE = "loan_referral"


def _disclose(grant: ConsentGrant, partner: Partner, **overrides: Any) -> gate.Disclosed:
    arguments: dict[str, Any] = {
        "grant_id": grant.id,
        "partner_id": partner.id,
        "purpose": PURPOSE,
        "reference": "lead:test",
    }
    arguments.update(overrides)
    return gate.disclose(**arguments)


def test_disclose_returns_the_data_and_logs_one_disclosure_and_one_ledger_entry(
    make_grant: MakeGrant, partner: Partner
) -> None:
    grant = make_grant(partners=[partner])
    entries_before = LedgerEntry.objects.count()

    disclosed = _disclose(grant, partner, fields=("full_name", "phone"), reference="lead:42")

    assert disclosed.data == {"full_name": "王小明", "phone": "+86 138 0013 8000"}
    disclosure = Disclosure.objects.get()
    assert disclosure.id == disclosed.disclosure_id
    assert (disclosure.grant_id, disclosure.subject_id, disclosure.partner_id) == (
        grant.id,
        grant.subject_id,
        partner.id,
    )
    assert (disclosure.fields, disclosure.purpose, disclosure.reference) == (
        ["full_name", "phone"],
        PURPOSE,
        "lead:42",
    )
    assert LedgerEntry.objects.count() == entries_before + 1
    assert sequencer.sequence_pending() == entries_before + 1
    entry = LedgerEntry.objects.get(seq=entries_before)
    assert entry.kind == "data.disclosed"
    assert json.loads(entry.canonical)["data"] == {
        "disclosure_id": str(disclosure.id),
        "receipt_id": str(grant.id),
        "subject_id": str(grant.subject_id),
        "partner_id": str(partner.id),
        "fields": ["full_name", "phone"],
        "purpose": PURPOSE,
        "reference": "lead:42",
    }


def test_disclose_defaults_to_every_personal_data_field(
    make_grant: MakeGrant, partner: Partner
) -> None:
    disclosed = _disclose(make_grant(partners=[partner]), partner)

    assert set(disclosed.data) == set(PII_FIELDS)
    assert Disclosure.objects.get().fields == list(PII_FIELDS)


def test_ledger_never_holds_a_personal_data_value(
    make_grant: MakeGrant, make_applicant: MakeApplicant, partner: Partner
) -> None:
    applicant = make_applicant(full_name="Chen Jing", employer="Unique Employer 77")
    with transaction.atomic():
        subject = vault.store_subject(applicant=applicant, is_sandbox=False)
    grant = make_grant(partners=[partner], subject=subject)

    disclosed = _disclose(grant, partner)

    assert disclosed.data["full_name"] == "Chen Jing"
    sequencer.sequence_pending()
    ledger_text = "\n".join(LedgerEntry.objects.values_list("canonical", flat=True))
    assert '"kind":"data.disclosed"' in ledger_text
    assert '"kind":"consent.granted"' in ledger_text
    personal = [*applicant.as_strings().values(), "13800138000", "203.0.113.9", "OperatorApp"]
    for value in personal:
        assert value not in ledger_text


def _assert_refused_without_trace(
    code: str, grant: ConsentGrant, partner: Partner, **overrides: Any
) -> None:
    entries_before = LedgerEntry.objects.count()

    with pytest.raises(gate.DisclosureRefused) as refused:
        _disclose(grant, partner, **overrides)

    assert refused.value.code == code
    assert not Disclosure.objects.exists()
    assert LedgerEntry.objects.count() == entries_before
    assert not LedgerEntry.objects.filter(kind="data.disclosed").exists()


def test_withdrawn_consent_blocks_disclosure(make_grant: MakeGrant, partner: Partner) -> None:
    grant = make_grant(partners=[partner])
    grants.withdraw(grant_id=grant.id, channel="api")

    _assert_refused_without_trace("consent_withdrawn", grant, partner)


def test_expired_consent_blocks_disclosure(make_grant: MakeGrant, partner: Partner) -> None:
    now = timezone.now()
    grant = make_grant(
        partners=[partner],
        collected_at=now - timedelta(days=2),
        expires_at=now - timedelta(seconds=1),
    )

    _assert_refused_without_trace("consent_expired", grant, partner)


def test_purpose_not_consented_blocks_disclosure(make_grant: MakeGrant, partner: Partner) -> None:
    grant = make_grant(partners=[partner], purposes=("loan_referral",))

    _assert_refused_without_trace("purpose_not_consented", grant, partner, purpose="marketing")


def test_partner_not_a_recipient_blocks_disclosure(make_grant: MakeGrant, partner: Partner) -> None:
    grant = make_grant(partners=[partner])

    _assert_refused_without_trace("partner_not_in_scope", grant, PartnerFactory())


def test_matched_scope_discloses_only_to_partners_routing_added(
    make_grant: MakeGrant, partner: Partner
) -> None:
    grant = make_grant()  # matched-partners scope: no recipient until routing adds one

    _assert_refused_without_trace("partner_not_in_scope", grant, partner)
    grants.add_matched_recipients(grant=grant, partner_ids=[partner.id])
    assert _disclose(grant, partner).data["full_name"] == "王小明"


def test_erased_subject_blocks_disclosure(make_grant: MakeGrant, partner: Partner) -> None:
    grant = make_grant(partners=[partner])
    Subject.objects.filter(pk=grant.subject_id).update(erased_at=timezone.now(), wrapped_key=None)

    _assert_refused_without_trace("subject_erased", grant, partner)


def test_unknown_field_name_is_a_value_error_and_logs_nothing(
    make_grant: MakeGrant, partner: Partner
) -> None:
    grant = make_grant(partners=[partner])
    entries_before = LedgerEntry.objects.count()

    with pytest.raises(ValueError, match="password"):
        _disclose(grant, partner, fields=("full_name", "password"))

    assert not Disclosure.objects.exists()
    assert LedgerEntry.objects.count() == entries_before


def test_refusal_message_carries_no_personal_data(make_grant: MakeGrant, partner: Partner) -> None:
    grant = make_grant(partners=[partner])
    grants.withdraw(grant_id=grant.id, channel="api")

    with pytest.raises(gate.DisclosureRefused) as refused:
        _disclose(grant, partner)

    assert "王小明" not in str(refused.value)
    assert "138" not in str(refused.value)


# --- Withdrawal racing a disclosure (PostgreSQL row locks) -----------------------------------


def _in_thread(target: Callable[[], None], errors: list[BaseException]) -> threading.Thread:
    def run() -> None:
        try:
            target()
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)
        finally:
            connections.close_all()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def _wait_until_blocked_on_a_lock(thread: threading.Thread, timeout: float = 5.0) -> None:
    """Until ``thread`` waits on a row lock, or finished (when the lock is missing)."""
    deadline = time.monotonic() + timeout
    with connection.cursor() as cursor:
        while thread.is_alive() and time.monotonic() < deadline:
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
            if cursor.fetchone()[0]:
                return
            time.sleep(0.01)


def _disclosures_after_withdrawal(grant_id: uuid.UUID) -> list[Disclosure]:
    withdrawal = ConsentWithdrawal.objects.get(grant_id=grant_id)
    return list(
        Disclosure.objects.filter(grant_id=grant_id, disclosed_at__gte=withdrawal.withdrawn_at)
    )


@pytest.mark.postgres
def test_disclosure_holding_the_grant_makes_withdrawal_wait_until_it_is_logged(
    transactional_db: None, make_grant: MakeGrant, partner: Partner
) -> None:
    grant = make_grant(partners=[partner])
    holding, release = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def discloser() -> None:
        with transaction.atomic():
            _disclose(grant, partner)
            holding.set()
            release.wait(10)

    disclosing = _in_thread(discloser, errors)
    assert holding.wait(10)
    withdrawing = _in_thread(lambda: grants.withdraw(grant_id=grant.id, channel="api"), errors)
    _wait_until_blocked_on_a_lock(withdrawing)
    release.set()
    disclosing.join(10)
    withdrawing.join(10)

    assert errors == []
    assert Disclosure.objects.filter(grant=grant).count() == 1
    assert _disclosures_after_withdrawal(grant.id) == []


@pytest.mark.postgres
def test_withdrawal_holding_the_grant_makes_disclosure_wait_and_refuse(
    transactional_db: None, make_grant: MakeGrant, partner: Partner
) -> None:
    grant = make_grant(partners=[partner])
    holding, release = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def withdrawer() -> None:
        with transaction.atomic():
            grants.withdraw(grant_id=grant.id, channel="api")
            holding.set()
            release.wait(10)

    withdrawing = _in_thread(withdrawer, errors)
    assert holding.wait(10)
    disclosing = _in_thread(lambda: _disclose(grant, partner), errors)
    _wait_until_blocked_on_a_lock(disclosing)
    release.set()
    withdrawing.join(10)
    disclosing.join(10)

    assert [getattr(e, "code", repr(e)) for e in errors] == ["consent_withdrawn"]
    assert not Disclosure.objects.filter(grant=grant).exists()
    assert not LedgerEntry.objects.filter(kind="data.disclosed").exists()


@pytest.mark.postgres
def test_racing_withdrawal_and_disclosure_never_disclose_after_withdrawal(
    transactional_db: None, make_grant: MakeGrant, partner: Partner
) -> None:
    for _round in range(6):
        grant = make_grant(partners=[partner])

        results = run_concurrently(
            partial(_disclose, grant, partner),
            partial(grants.withdraw, grant_id=grant.id, channel="api"),
        )

        errors = [r for r in results if isinstance(r, BaseException)]

        assert all(isinstance(e, gate.DisclosureRefused) for e in errors), errors
        assert _disclosures_after_withdrawal(grant.id) == []
        assert Disclosure.objects.filter(grant=grant).count() == (0 if errors else 1)
