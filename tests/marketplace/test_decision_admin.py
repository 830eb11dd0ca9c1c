"""The referral's admin page answers "why did it go there" for ops and compliance: the
strategy, each candidate's eligibility or reason codes with their labels, posteriors,
scores and the winners; finance (no referral access) sees nothing of it, and no personal
data shows."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.test import Client
from django.urls import reverse

from marketplace.models import Referral
from partners.roles import COMPLIANCE_GROUP, FINANCE_GROUP, OPS_GROUP, ensure_role_groups
from tests.factories import PartnerFactory, ProductFactory, referral_payload

pytestmark = pytest.mark.django_db


def _client(group: str) -> Client:
    ensure_role_groups()
    user = get_user_model().objects.create_user(group, f"{group}@example.invalid", "pw-12345!")
    user.is_staff = True
    user.save()
    user.groups.add(Group.objects.get(name=group))
    client = Client()
    client.force_login(user)
    return client


@pytest.mark.parametrize("group", [OPS_GROUP, COMPLIANCE_GROUP])
def test_the_referral_page_shows_the_decision_with_reason_labels(
    group: str, make_referral: Callable[..., Referral]
) -> None:
    product = ProductFactory(partner=PartnerFactory(name="Dedupe Lender"))
    payload: dict[str, Any] = referral_payload(national_id="110101199003075555")
    make_referral(national_id="110101199003075555")
    referral = make_referral(national_id="110101199003075555")

    page = _client(group).get(reverse("admin:marketplace_referral_change", args=[referral.pk]))

    assert page.status_code == 200
    html = page.content.decode()
    assert "routing decision" in html.lower()
    assert "default v0" in html  # the strategy and its version
    assert "dedupe: Partner got this person within its dedupe window" in html
    assert "Dedupe Lender" in html and str(product.id) in html
    for value in payload["applicant"].values():
        assert str(value) not in html


def test_the_decision_of_a_routed_referral_lists_scores_and_winners(
    make_referral: Callable[..., Referral],
) -> None:
    ProductFactory(partner=PartnerFactory(name="Winner Lender"))
    referral = make_referral()

    html = (
        _client(OPS_GROUP)
        .get(reverse("admin:marketplace_referral_change", args=[referral.pk]))
        .content.decode()
    )

    assert "0.80 / 0.55 / 0.85 / 0.05" in html  # cold-start posterior means
    assert "Winner Lender" in html and "none (the default strategy)" in html


def test_finance_cannot_open_referrals_or_their_decisions(
    make_referral: Callable[..., Referral],
) -> None:
    ProductFactory(partner=PartnerFactory())
    referral = make_referral()

    page = _client(FINANCE_GROUP).get(
        reverse("admin:marketplace_referral_change", args=[referral.pk])
    )

    assert page.status_code == 403
