"""The compliance search accepts a referral id: marketplace's resolver (registered with
consent at start-up, since consent may not import marketplace) finds the referral's subject
in either key mode; an id no referral has finds nobody."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import pytest
from django.test import Client

from consent import compliance
from marketplace.models import Referral
from tests.consent.support import staff_user

FIND_URL = "/admin/consent/subject/find/"


@pytest.fixture
def officer(db: None) -> Client:
    client = Client()
    client.force_login(staff_user("officer", groups=["compliance"]))
    return client


def test_referrals_are_a_kind_the_search_understands() -> None:
    assert compliance.reference_kinds() == ["consent receipt", "referral"]


@pytest.mark.parametrize("is_sandbox", [False, True], ids=["live", "sandbox"])
def test_a_referral_id_finds_its_subject(
    officer: Client, make_referral: Callable[..., Referral], is_sandbox: bool
) -> None:
    make_referral()  # another applicant
    referral = make_referral(is_sandbox=is_sandbox)

    assert compliance.find_by_reference(reference=referral.id) == [
        compliance.ReferenceMatch("referral", referral.subject_id)
    ]
    response = officer.post(FIND_URL, {"reference": str(referral.id)})

    assert response.status_code == 200
    html = response.content.decode()
    assert "1 subject(s) match" in html
    assert f'id="subject-{referral.subject_id}"' in html
    assert f"Referral <code>{referral.id}</code> is about subject" in html


def test_an_id_no_referral_has_finds_nobody(
    officer: Client, make_referral: Callable[..., Referral]
) -> None:
    referral = make_referral()
    unknown = uuid.uuid4()

    response = officer.post(FIND_URL, {"reference": str(unknown)})

    assert response.status_code == 200
    html = response.content.decode()
    assert "No subject matches" in html and str(unknown) in html
    assert str(referral.subject_id) not in html
