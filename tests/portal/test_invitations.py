"""The operator invites partner staff from the admin; the link is shown once, works once,
expires, and can be revoked (with the access it gave)."""

from __future__ import annotations

import hashlib
import re
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from partners.permissions import is_partner_staff, partner_ids_for_user
from portal.invitations import InvitationError, accept_invitation, issue_invitation
from portal.models import PartnerInvitation
from tests.concurrency import run_concurrently
from tests.factories import PartnerFactory
from tests.portal.conftest import World, client_for

GOOD_PASSWORD = "Kiwi-Orbit-2026-Lantern"


def _invite_from_admin(world: World) -> tuple[PartnerInvitation, str, str]:
    ops = client_for(world.users["ops"])
    response = ops.post(
        reverse("admin:portal_partnerinvitation_add"),
        {
            "partner": str(world.a.partner.pk),
            "name": "Wang Fang",
            "email": "wang.fang@alpha.example",
            "manage": "on",
        },
    )
    assert response.status_code == 200
    page = response.content.decode()
    (link,) = re.findall(r'value="(http://testserver/portal/invite/[^"]+/)"', page)
    token = link.rstrip("/").rsplit("/", 1)[1]
    invitation = PartnerInvitation.objects.get()
    return invitation, token, link


def test_ops_invite_from_the_admin_and_the_link_is_shown_once(world: World) -> None:
    invitation, token, _link = _invite_from_admin(world)
    assert invitation.partner == world.a.partner and invitation.manage
    assert invitation.created_by == world.users["ops"]
    assert invitation.token_hash == hashlib.sha256(token.encode()).hexdigest()
    assert token not in invitation.token_hash
    assert invitation.expires_at > timezone.now() + timedelta(days=6)
    ops = client_for(world.users["ops"])
    change = ops.get(reverse("admin:portal_partnerinvitation_change", args=[invitation.pk]))
    changelist = ops.get(reverse("admin:portal_partnerinvitation_changelist"))
    for page in (change, changelist):
        assert page.status_code == 200 and token not in page.content.decode()
    # No personal data of the invitee on the list page.
    assert "wang.fang@alpha.example" not in changelist.content.decode()
    assert "Wang Fang" not in changelist.content.decode()


def test_only_ops_and_superusers_invite(world: World) -> None:
    url = reverse("admin:portal_partnerinvitation_add")
    for who in ("alpha", "plain"):
        response = client_for(world.users[who]).get(url)
        assert response.status_code in (302, 403), who
    assert client_for(world.users["root"]).get(url).status_code == 200


def test_the_invitee_sets_a_password_and_becomes_partner_staff_once(world: World) -> None:
    _, _token, link = _invite_from_admin(world)
    client = Client()
    assert client.get(link).status_code == 200
    response = client.post(
        link,
        {"username": "wangfang", "password": GOOD_PASSWORD, "password_again": GOOD_PASSWORD},
    )
    assert response.status_code == 302 and response["Location"] == reverse("portal:home")
    user = get_user_model().objects.get(username="wangfang")
    assert is_partner_staff(user)
    assert partner_ids_for_user(user) == frozenset({world.a.partner.pk})
    assert partner_ids_for_user(user, manage=True) == frozenset({world.a.partner.pk})
    assert user.check_password(GOOD_PASSWORD)
    # Signed in, in A's portal.
    assert "Alpha Lending" in client.get(reverse("portal:home")).content.decode()
    invitation = PartnerInvitation.objects.get()
    assert invitation.used_at is not None and invitation.user == user
    # The link works once.
    again = Client()
    assert again.get(link).status_code == 404
    response = again.post(
        link, {"username": "intruder", "password": GOOD_PASSWORD, "password_again": GOOD_PASSWORD}
    )
    assert response.status_code == 404
    assert not get_user_model().objects.filter(username="intruder").exists()


def test_an_expired_or_unknown_link_is_refused(world: World) -> None:
    issued = issue_invitation(
        partner=world.a.partner, name="Late", email="late@alpha.example", ttl=timedelta(days=1)
    )
    PartnerInvitation.objects.filter(pk=issued.invitation.pk).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    link = reverse("portal:invite", args=[issued.token])
    client = Client()
    assert client.get(link).status_code == 404
    data = {"username": "late", "password": GOOD_PASSWORD, "password_again": GOOD_PASSWORD}
    assert client.post(link, data).status_code == 404
    assert client.get(reverse("portal:invite", args=["not-a-token"])).status_code == 404
    assert not get_user_model().objects.filter(username="late").exists()


def test_a_weak_password_or_a_taken_username_keeps_the_invitation_open(world: World) -> None:
    issued = issue_invitation(partner=world.a.partner, name="New", email="new@alpha.example")
    link = reverse("portal:invite", args=[issued.token])
    client = Client()
    weak = client.post(link, {"username": "newbie", "password": "123", "password_again": "123"})
    assert weak.status_code == 400 and "password" in weak.context["form"].errors
    taken = client.post(
        link, {"username": "ALPHA", "password": GOOD_PASSWORD, "password_again": GOOD_PASSWORD}
    )
    assert taken.status_code == 400 and "username" in taken.context["form"].errors
    issued.invitation.refresh_from_db()
    assert issued.invitation.used_at is None
    ok = client.post(
        link, {"username": "newbie", "password": GOOD_PASSWORD, "password_again": GOOD_PASSWORD}
    )
    assert ok.status_code == 302


def test_a_view_only_invitation_gives_view_access(world: World) -> None:
    issued = issue_invitation(
        partner=world.b.partner, name="Reader", email="r@bravo.example", manage=False
    )
    client = Client()
    client.post(
        reverse("portal:invite", args=[issued.token]),
        {"username": "reader", "password": GOOD_PASSWORD, "password_again": GOOD_PASSWORD},
    )
    user = get_user_model().objects.get(username="reader")
    assert partner_ids_for_user(user) == frozenset({world.b.partner.pk})
    assert partner_ids_for_user(user, manage=True) == frozenset()
    response = client.post(reverse("portal:key_create"), {"name": "x", "mode": "sandbox"})
    assert response.status_code == 403


def test_revoking_closes_the_link_and_takes_the_access_away(world: World) -> None:
    open_one = issue_invitation(partner=world.a.partner, name="A", email="a@alpha.example")
    used_one = issue_invitation(partner=world.a.partner, name="B", email="b@alpha.example")
    staff = Client()
    staff.post(
        reverse("portal:invite", args=[used_one.token]),
        {"username": "soon-gone", "password": GOOD_PASSWORD, "password_again": GOOD_PASSWORD},
    )
    assert staff.get(reverse("portal:home")).status_code == 200
    ops = client_for(world.users["ops"])
    response = ops.post(
        reverse("admin:portal_partnerinvitation_changelist"),
        {
            "action": "revoke",
            "_selected_action": [str(open_one.invitation.pk), str(used_one.invitation.pk)],
        },
    )
    assert response.status_code == 302
    assert Client().get(reverse("portal:invite", args=[open_one.token])).status_code == 404
    user = get_user_model().objects.get(username="soon-gone")
    assert partner_ids_for_user(user) is None  # no partner left: out of the group
    assert staff.get(reverse("portal:home")).status_code == 403
    # Partner staff cannot revoke (or see) invitations.
    alpha = client_for(world.users["alpha"])
    assert alpha.get(reverse("admin:portal_partnerinvitation_changelist")).status_code in (
        302,
        403,
    )


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_people_racing_with_one_link_make_one_account() -> None:
    partner = PartnerFactory()
    issued = issue_invitation(partner=partner, name="Twice", email="twice@example.invalid")

    def accept(username: str) -> object:
        return accept_invitation(token=issued.token, username=username, password=GOOD_PASSWORD)

    results = run_concurrently(lambda: accept("first-one"), lambda: accept("second-one"))
    made = [r for r in results if not isinstance(r, BaseException)]
    refused = [r for r in results if isinstance(r, InvitationError)]
    assert len(made) == 1 and len(refused) == 1, results
    assert get_user_model().objects.filter(username__endswith="-one").count() == 1
