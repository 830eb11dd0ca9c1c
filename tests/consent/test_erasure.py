"""Erasure by crypto-shredding: the command, the admin action and what remains afterwards."""

from __future__ import annotations

import hashlib
import json
import logging
from io import StringIO

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from billing.models import Charge
from billing.outcomes import report_outcome
from consent import compliance, crypto, erasure, gate, grants, sequencer, vault
from consent.ledger import verify_ledger
from consent.models import (
    PII_FIELDS,
    ConsentWithdrawal,
    DeletionRequest,
    Disclosure,
    LedgerEntry,
    Subject,
)
from marketplace.events import EventReport
from marketplace.models import Lead, LeadStatus, Referral
from partners.models import Partner, TrafficSource
from tests.consent.conftest import MakeApplicant, MakeGrant
from tests.consent.support import APPLICANT_SECRETS, disclose_to
from tests.factories import (
    FeeScheduleFactory,
    ProductFactory,
    referral_payload,
)
from tests.marketplace.conftest import create_referral, set_lead_status

REASON = "Applicant asked for erasure by letter"


def _erase(*args: str) -> str:
    out = StringIO()
    call_command("erase_subject", *args, stdout=out)
    return out.getvalue()


def test_erasure_leaves_nothing_decryptable(make_grant: MakeGrant, partner: Partner) -> None:
    grant = make_grant(partners=[partner])
    subject_id = grant.subject_id

    _erase("--subject", str(subject_id), "--reason", REASON)

    subject = Subject.objects.get(pk=subject_id)
    assert subject.erased_at is not None
    assert subject.wrapped_key is None
    assert all(bytes(getattr(subject, f"{name}_enc")) == b"" for name in PII_FIELDS)
    assert subject.national_id_index == subject.phone_index == f"erased:{subject_id}"
    assert subject.erasure_reason_sha256 == hashlib.sha256(REASON.encode()).hexdigest()
    with pytest.raises(crypto.VaultKeyError):
        vault._decrypt(subject, PII_FIELDS)
    with pytest.raises(gate.DisclosureRefused):
        disclose_to(grant, [partner])


def test_erased_subject_is_refused_by_the_gate_as_erased(
    make_grant: MakeGrant, partner: Partner
) -> None:
    grant = make_grant(partners=[partner])
    erasure.erase_subject(subject_id=grant.subject_id, reason=REASON, erased_by="test")

    with pytest.raises(gate.DisclosureRefused) as refused:
        disclose_to(grant, [partner])

    assert refused.value.code == "subject_erased"


def test_erasure_withdraws_open_consents_and_asks_recipients_to_delete(
    make_grant: MakeGrant, partner: Partner
) -> None:
    grant = make_grant(partners=[partner])
    leads = disclose_to(grant, [partner])[partner.id]
    second = make_grant(partners=[partner], subject=grant.subject)  # no disclosure

    erasure.erase_subject(subject_id=grant.subject_id, reason=REASON, erased_by="test")

    assert ConsentWithdrawal.objects.filter(grant__in=[grant, second]).count() == 2
    assert ConsentWithdrawal.objects.get(grant=grant).channel == "erasure"
    (request,) = DeletionRequest.objects.all()
    assert (request.partner_id, request.lead_ids) == (partner.id, leads)
    sequencer.sequence_pending()
    (entry,) = LedgerEntry.objects.filter(kind="subject.erased")
    data = json.loads(entry.canonical)["data"]
    assert data["subject_id"] == str(grant.subject_id)
    assert data["reason_sha256"] == hashlib.sha256(REASON.encode()).hexdigest()
    assert sorted(data["withdrawn_receipt_ids"]) == sorted([str(grant.id), str(second.id)])
    assert REASON not in entry.canonical
    kinds = list(LedgerEntry.objects.order_by("seq").values_list("kind", flat=True))
    assert kinds[-1] == "subject.erased"


def test_erasing_twice_is_a_no_op(make_grant: MakeGrant, partner: Partner) -> None:
    grant = make_grant(partners=[partner])
    _erase("--subject", str(grant.subject_id), "--reason", REASON)
    erased_at = Subject.objects.get(pk=grant.subject_id).erased_at
    entries = LedgerEntry.objects.count()

    out = _erase("--subject", str(grant.subject_id), "--reason", "again, by mistake")

    assert "already erased" in out
    assert Subject.objects.get(pk=grant.subject_id).erased_at == erased_at
    assert LedgerEntry.objects.count() == entries


def test_erase_by_national_id_and_by_phone_through_the_blind_index(
    make_grant: MakeGrant, make_applicant: MakeApplicant
) -> None:
    by_id = vault.store_subject(
        applicant=make_applicant(national_id="110101199003071234"), is_sandbox=False
    )
    by_phone = vault.store_subject(
        applicant=make_applicant(phone="+86 139 0000 0001"), is_sandbox=False
    )

    out_id = _erase("--national-id", "110101 199003071234", "--reason", REASON)
    out_phone = _erase("--phone", "13900000001", "--reason", REASON)

    assert str(by_id.id) in out_id and str(by_phone.id) in out_phone
    assert Subject.objects.filter(erased_at__isnull=False).count() == 2
    assert "110101199003071234" not in out_id and "13900000001" not in out_phone


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--phone", "13700000000", "--reason", REASON], "no subject matches that phone number"),
        (["--national-id", "X1", "--reason", REASON], "no subject matches that ID number"),
        (["--subject", "not-a-uuid", "--reason", REASON], "--subject is not a UUID"),
        (["--subject", "3f0b1d5e-0000-4000-8000-000000000000", "--reason", REASON], "no subject"),
        (["--phone", "13700000000", "--reason", "   "], "--reason must not be empty"),
    ],
)
def test_erase_command_fails_with_a_plain_message(db: None, args: list[str], message: str) -> None:
    with pytest.raises(CommandError, match=message) as failed:
        _erase(*args)

    assert "13700000000" not in str(failed.value)
    assert not Subject.objects.filter(erased_at__isnull=False).exists()


def test_erase_command_without_a_reason_exits_non_zero(db: None) -> None:
    with pytest.raises(CommandError, match="--reason"):
        _erase("--phone", "13700000000")


def test_erase_command_refuses_when_several_subjects_share_the_phone(
    make_applicant: MakeApplicant, db: None
) -> None:
    first = vault.store_subject(applicant=make_applicant(), is_sandbox=False)
    # The same phone, another ID number:
    second = vault.store_subject(applicant=make_applicant(), is_sandbox=False)

    with pytest.raises(CommandError, match="2 subjects match that phone number") as failed:
        _erase("--phone", "+86 138 0013 8000", "--reason", REASON)

    assert str(first.id) in str(failed.value) and str(second.id) in str(failed.value)
    assert not Subject.objects.filter(erased_at__isnull=False).exists()


def test_erase_command_exit_status_is_non_zero_on_failure(db: None) -> None:
    from django.core.management import ManagementUtility

    utility = ManagementUtility(["manage.py", "erase_subject", "--phone", "1", "--reason", REASON])
    with pytest.raises(SystemExit) as exited:
        utility.execute()

    assert exited.value.code != 0


def test_referrals_leads_charges_and_other_subjects_stay_and_the_ledger_verifies(
    source: TrafficSource, consent_text: object, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    product = ProductFactory()
    FeeScheduleFactory(partner=product.partner)
    erased = create_referral(source, referral_payload())
    kept = create_referral(source, referral_payload())
    lead = set_lead_status(erased.leads.get(), LeadStatus.DELIVERED)
    report_outcome(
        lead_id=lead.id,
        partner_id=lead.partner_id,
        report=EventReport(external_id="acc-1", type="accepted", occurred_at=timezone.now()),
    )
    charges = list(Charge.objects.filter(lead=lead).values_list("id", "amount"))
    assert charges
    kept_subject = Subject.objects.get(pk=kept.subject_id)
    before = bytes(kept_subject.full_name_enc)

    _erase("--subject", str(erased.subject_id), "--reason", REASON)

    assert Referral.objects.filter(pk=erased.pk).exists()
    assert Lead.objects.get(pk=lead.pk).status == LeadStatus.ACCEPTED
    assert list(Charge.objects.filter(lead=lead).values_list("id", "amount")) == charges
    kept_subject.refresh_from_db()
    assert kept_subject.erased_at is None
    assert bytes(kept_subject.full_name_enc) == before
    assert vault._decrypt(kept_subject, ("full_name",))["full_name"] == "Wang Xiaoming"
    assert verify_ledger().ok
    out = StringIO()
    call_command("verify_consent_ledger", stdout=out)
    assert "consent ledger OK" in out.getvalue()
    assert "Wang Xiaoming" not in caplog.text


def test_erased_subject_cannot_be_found_or_revealed(
    make_grant: MakeGrant, partner: Partner
) -> None:
    grant = make_grant(partners=[partner])
    erasure.erase_subject(subject_id=grant.subject_id, reason=REASON, erased_by="test")
    superuser = User.objects.create_superuser("root", "root@example.invalid", "pw-123456!")

    assert compliance.find_subjects(phone="+86 138 0013 8000") == []
    with pytest.raises(gate.RevealRefused) as refused:
        gate.reveal(
            subject_id=grant.subject_id, user=superuser, fields=("full_name",), reason=REASON
        )
    assert refused.value.code == "subject_erased"


def test_disclosures_and_history_remain_after_erasure(
    make_grant: MakeGrant, partner: Partner
) -> None:
    grant = make_grant(partners=[partner])
    disclose_to(grant, [partner])

    erasure.erase_subject(subject_id=grant.subject_id, reason=REASON, erased_by="test")

    assert Disclosure.objects.filter(grant=grant).count() == 1
    history = compliance.subject_history(subject_id=grant.subject_id)
    assert history.subject.erased_at is not None
    assert history.grants[0].status == "withdrawn"


# --- Admin action ----------------------------------------------------------------------------


def test_admin_erase_action_asks_for_a_reason_then_erases(
    make_grant: MakeGrant, partner: Partner, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    grant = make_grant(partners=[partner])
    client = Client()
    client.force_login(User.objects.create_superuser("ops", "ops@example.invalid", "pw-123456!"))
    url = reverse("admin:consent_subject_changelist")
    selected = {"action": "erase", "_selected_action": [str(grant.subject_id)]}

    page = client.post(url, selected)
    assert page.status_code == 200 and b'name="reason"' in page.content
    assert Subject.objects.get(pk=grant.subject_id).erased_at is None

    done = client.post(url, {**selected, "apply": "1", "reason": REASON})

    assert done.status_code == 302
    subject = Subject.objects.get(pk=grant.subject_id)
    assert subject.erased_at is not None and subject.erased_by == "ops"
    assert grants.is_active(grant) is False
    assert not [s for s in APPLICANT_SECRETS if s in caplog.text]


def test_erase_action_needs_the_erase_permission(make_grant: MakeGrant) -> None:
    from tests.consent.support import staff_user

    grant = make_grant()
    client = Client()
    client.force_login(staff_user("officer", groups=["compliance"]))
    url = reverse("admin:consent_subject_changelist")

    page = client.get(url)
    refused = client.post(
        url,
        {
            "action": "erase",
            "_selected_action": [str(grant.subject_id)],
            "apply": "1",
            "reason": REASON,
        },
    )

    assert page.status_code == 200
    assert b'value="erase"' not in page.content
    assert refused.status_code in {200, 302}
    assert Subject.objects.get(pk=grant.subject_id).erased_at is None
