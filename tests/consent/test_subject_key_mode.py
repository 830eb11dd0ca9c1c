"""Key mode separates vault subjects: a person sent with a sandbox key (real phone and ID
number in test traffic) is a sandbox subject, apart from the same person's live subject.
Sandbox data never refreshes live data, compliance search finds both and says which mode
each is in, and erasure by subject id erases one mode while erasure by number erases the
person in both modes."""

from __future__ import annotations

from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client

from consent import compliance, gate, vault
from consent.models import ConsentWithdrawal, Subject
from marketplace.models import Referral
from partners.models import Partner, TrafficSource
from tests.consent.conftest import MakeApplicant
from tests.consent.support import PURPOSE, staff_user
from tests.factories import PartnerFactory, ProductFactory, referral_payload
from tests.marketplace.conftest import create_referral

pytestmark = pytest.mark.django_db

NATIONAL_ID = "110101199003075555"
PHONE = "+86 138 0013 8000"  # referral_payload's
REASON = "Applicant asked for erasure by letter"
FIND_URL = "/admin/consent/subject/find/"


@pytest.fixture
def partner(consent_text: object) -> Partner:
    """Its product never dedupes, so the same applicant can be referred again."""
    partner = PartnerFactory()
    ProductFactory(partner=partner, dedupe_days=0)
    return partner


def refer(source: TrafficSource, *, sandbox: bool, **applicant: Any) -> Referral:
    payload = referral_payload(national_id=applicant.pop("national_id", NATIONAL_ID))
    payload["applicant"].update(applicant)
    return create_referral(source, payload, is_sandbox=sandbox)


def _erase(*args: str) -> str:
    out = StringIO()
    call_command("erase_subject", *args, stdout=out)
    return out.getvalue()


def test_the_same_person_sent_live_and_in_sandbox_is_two_subjects(
    source: TrafficSource, partner: Partner
) -> None:
    live = refer(source, sandbox=False)
    sandbox = refer(source, sandbox=True)
    live_again = refer(source, sandbox=False)
    sandbox_again = refer(source, sandbox=True)

    assert live.subject_id != sandbox.subject_id
    # Within a mode the vault still deduplicates by ID number.
    assert live_again.subject_id == live.subject_id
    assert sandbox_again.subject_id == sandbox.subject_id
    assert Subject.objects.get(pk=live.subject_id).is_sandbox is False
    assert Subject.objects.get(pk=sandbox.subject_id).is_sandbox is True
    # Every grant, referral and lead of a subject has the subject's mode.
    for referral in (live, sandbox, live_again, sandbox_again):
        assert referral.grant is not None
        assert referral.grant.subject_id == referral.subject_id
        assert referral.grant.is_sandbox is referral.is_sandbox
        assert {lead.subject_id for lead in referral.leads.all()} == {referral.subject_id}


def test_sandbox_traffic_never_overwrites_the_live_persons_data(
    source: TrafficSource, partner: Partner
) -> None:
    live = refer(source, sandbox=False, full_name="王小明", employer="Real Employer Co.")
    refer(source, sandbox=True, full_name="Sandbox Tester", employer="Test Harness Ltd.")

    disclosed = gate.disclose(
        grant_id=live.grant_id, partner_id=partner.id, purpose=PURPOSE, reference="x"
    )

    assert disclosed.data["full_name"] == "王小明"
    assert disclosed.data["employer"] == "Real Employer Co."


def test_compliance_search_finds_the_person_in_both_modes_live_first(
    source: TrafficSource, partner: Partner
) -> None:
    sandbox = refer(source, sandbox=True)  # sent first: order is by mode, not by age
    live = refer(source, sandbox=False)
    refer(source, sandbox=False, national_id="110101199003076666", phone="+86 139 0000 0009")

    for query in ({"phone": PHONE}, {"national_id": NATIONAL_ID}):
        assert compliance.find_subjects(**query) == [live.subject_id, sandbox.subject_id]


def test_find_an_applicant_labels_each_subjects_mode(
    source: TrafficSource, partner: Partner
) -> None:
    sandbox = refer(source, sandbox=True)
    live = refer(source, sandbox=False)
    officer = Client()
    officer.force_login(staff_user("officer", groups=["compliance"]))

    html = officer.post(FIND_URL, {"phone": "138 0013 8000"}).content.decode()

    assert "2 subject(s) match" in html
    live_part = html[html.index(f"subject-{live.subject_id}") :]
    sandbox_part = html[html.index(f"subject-{sandbox.subject_id}") :]
    assert html.index(f"subject-{live.subject_id}") < html.index(f"subject-{sandbox.subject_id}")
    assert 'data-mode="live"' in live_part.split("subject-history")[0]
    assert 'data-mode="sandbox"' in sandbox_part.split("subject-history")[0]


def test_erasing_the_live_subject_by_id_leaves_the_sandbox_subject(
    source: TrafficSource, partner: Partner
) -> None:
    live = refer(source, sandbox=False)
    sandbox = refer(source, sandbox=True)

    out = _erase("--subject", str(live.subject_id), "--reason", REASON)

    assert str(live.subject_id) in out and str(sandbox.subject_id) not in out
    assert Subject.objects.get(pk=live.subject_id).erased_at is not None
    kept = Subject.objects.get(pk=sandbox.subject_id)
    assert kept.erased_at is None and kept.wrapped_key is not None
    assert not ConsentWithdrawal.objects.filter(grant_id=sandbox.grant_id).exists()
    assert ConsentWithdrawal.objects.filter(grant_id=live.grant_id).exists()
    # Still findable, so the sandbox copy can be erased too when the person asks.
    assert compliance.find_subjects(national_id=NATIONAL_ID) == [sandbox.subject_id]


@pytest.mark.parametrize("by", [("--national-id", NATIONAL_ID), ("--phone", "13800138000")])
def test_erasing_by_number_erases_the_person_in_both_modes(
    source: TrafficSource, partner: Partner, by: tuple[str, str]
) -> None:
    live = refer(source, sandbox=False)
    sandbox = refer(source, sandbox=True)

    out = _erase(*by, "--reason", REASON)

    assert str(live.subject_id) in out and str(sandbox.subject_id) in out
    erased = Subject.objects.filter(erased_at__isnull=False).values_list("pk", flat=True)
    assert set(erased) == {live.subject_id, sandbox.subject_id}
    withdrawn = ConsentWithdrawal.objects.values_list("grant_id", flat=True)
    assert set(withdrawn) == {live.grant_id, sandbox.grant_id}
    assert by[1] not in out


def test_erasing_by_a_phone_two_people_share_across_modes_is_refused(
    source: TrafficSource, partner: Partner
) -> None:
    live = refer(source, sandbox=False)
    other = refer(source, sandbox=True, national_id="110101199003076666")  # same phone

    with pytest.raises(CommandError, match="2 subjects match that phone number") as failed:
        _erase("--phone", PHONE, "--reason", REASON)

    assert str(live.subject_id) in str(failed.value)
    assert str(other.subject_id) in str(failed.value)
    assert not Subject.objects.filter(erased_at__isnull=False).exists()


# --- The vault's own functions take the mode explicitly ----------------------------------------


def test_store_subject_deduplicates_within_a_mode_only(make_applicant: MakeApplicant) -> None:
    person = make_applicant(national_id=NATIONAL_ID)

    live = vault.store_subject(applicant=person, is_sandbox=False)
    sandbox = vault.store_subject(applicant=person, is_sandbox=True)

    assert live.id != sandbox.id
    assert vault.store_subject(applicant=person, is_sandbox=False).id == live.id
    assert vault.store_subject(applicant=person, is_sandbox=True).id == sandbox.id
    assert vault.find_subject_ids(national_id=NATIONAL_ID, is_sandbox=False) == [live.id]
    assert vault.find_subject_ids(national_id=NATIONAL_ID, is_sandbox=True) == [sandbox.id]
    assert vault.find_subject_ids(phone=PHONE, is_sandbox=None) == [live.id, sandbox.id]
