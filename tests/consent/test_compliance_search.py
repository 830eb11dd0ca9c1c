"""Compliance can start from an id: a consent receipt id finds its subject, an unknown id
says so (no 500), a malformed one is a form error; the ledger's public key is shown in full
with its fingerprint on the compliance pages."""

from __future__ import annotations

import base64
import hashlib
import uuid

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from django.conf import settings
from django.test import Client
from django.urls import reverse

from consent import compliance, ledger
from consent.models import ConsentGrant
from partners.models import Partner
from tests.consent.conftest import MakeGrant
from tests.consent.support import APPLICANT_SECRETS, staff_user

FIND_URL = "/admin/consent/subject/find/"


@pytest.fixture
def officer(db: None) -> Client:
    client = Client()
    client.force_login(staff_user("officer", groups=["compliance"]))
    return client


@pytest.fixture
def grant(make_grant: MakeGrant, partner: Partner) -> ConsentGrant:
    make_grant()  # another subject, which must not be found
    return make_grant(partners=[partner])


def test_a_consent_receipt_id_finds_its_subject(officer: Client, grant: ConsentGrant) -> None:
    response = officer.post(FIND_URL, {"reference": str(grant.id)})

    assert response.status_code == 200
    html = response.content.decode()
    assert "1 subject(s) match" in html
    assert f'id="subject-{grant.subject_id}"' in html
    assert f"Consent receipt <code>{grant.id}</code> is about subject" in html
    assert html.count('class="module subject-history"') == 1
    assert not [s for s in APPLICANT_SECRETS if s in html]
    assert "no-store" in response["Cache-Control"]


def test_find_by_reference_names_the_kind_and_the_subject(grant: ConsentGrant) -> None:
    assert compliance.find_by_reference(reference=grant.id) == [
        compliance.ReferenceMatch("consent receipt", grant.subject_id)
    ]
    assert compliance.find_by_reference(reference=uuid.uuid4()) == []


def test_an_unknown_id_says_so(officer: Client, grant: ConsentGrant) -> None:
    unknown = uuid.uuid4()
    response = officer.post(FIND_URL, {"reference": str(unknown)})

    assert response.status_code == 200
    html = response.content.decode()
    assert "No subject matches" in html
    assert f"No consent receipt or referral has the id <code>{unknown}</code>" in html
    assert str(grant.subject_id) not in html


@pytest.mark.parametrize(
    "query, message",
    [
        ({"reference": "not-a-uuid"}, "Enter a valid UUID."),
        ({"reference": str(uuid.uuid4()), "phone": "13800138000"}, "not both at once"),
        ({"reference": ""}, "Type a phone number or an ID number, or give an id."),
    ],
    ids=["malformed", "both", "empty"],
)
def test_a_bad_search_is_a_form_error_not_a_500(
    officer: Client, grant: ConsentGrant, query: dict[str, str], message: str
) -> None:
    response = officer.post(FIND_URL, query)

    assert response.status_code == 200
    html = response.content.decode()
    assert message in html
    assert str(grant.subject_id) not in html


def _fingerprint_from_the_rule() -> tuple[str, str]:
    """Independent of the code under test: SHA-256 over the raw 32 key bytes, grouped."""
    raw = base64.b64decode(settings.LEDGER_SIGNING_KEY)
    public = Ed25519PrivateKey.from_private_bytes(raw).public_key()
    key_bytes = public.public_bytes(Encoding.Raw, PublicFormat.Raw)
    digest = hashlib.sha256(key_bytes).hexdigest()
    grouped = " ".join(digest[i : i + 4] for i in range(0, 64, 4))
    return base64.b64encode(key_bytes).decode(), grouped


@pytest.mark.parametrize(
    "page",
    ["find", "history", "checkpoints"],
)
def test_compliance_pages_show_the_ledger_key_in_full_with_its_fingerprint(
    officer: Client, grant: ConsentGrant, page: str
) -> None:
    ledger.make_checkpoint()
    url = {
        "find": FIND_URL,
        "history": reverse("admin:consent_subject_history", args=[grant.subject_id]),
        "checkpoints": reverse("admin:consent_checkpoint_changelist"),
    }[page]

    response = officer.get(url)

    assert response.status_code == 200
    html = response.content.decode()
    key, fingerprint = _fingerprint_from_the_rule()
    assert f'<code id="ledger-public-key">{key}</code>' in html
    assert f'<code id="ledger-key-fingerprint">{fingerprint}</code>' in html
    assert len(fingerprint.split()) == 16
    assert fingerprint.replace(" ", "") == ledger.public_key_id()
