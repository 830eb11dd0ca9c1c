"""Builders shared by the withdrawal, erasure and compliance tests."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence

from django.contrib.auth.models import Group, Permission, User

from consent import gate
from consent.models import ConsentGrant
from partners.models import Partner

PURPOSE = "loan_referral"

# The make_applicant fixture's values that must never leave the vault unlogged.
APPLICANT_SECRETS = (
    "王小明",
    "+86 138 0013 8000",
    "13800138000",
    "Shenzhen Example Tech Co.",
    "广东省深圳市南山区科技园 1 号",
)


def disclose_to(
    grant: ConsentGrant, partners: Sequence[Partner], leads_each: int = 1
) -> dict[uuid.UUID, list[str]]:
    """Disclose the grant's data to each partner, as delivery does: lead ids per partner."""
    leads: dict[uuid.UUID, list[str]] = {}
    for partner in partners:
        for _ in range(leads_each):
            lead_id = str(uuid.uuid4())
            gate.disclose(
                grant_id=grant.id,
                partner_id=partner.id,
                purpose=PURPOSE,
                reference=f"lead:{lead_id}",
            )
            leads.setdefault(partner.id, []).append(lead_id)
    return {pid: sorted(ids) for pid, ids in leads.items()}


def staff_user(
    username: str, *, groups: Iterable[str] = (), permissions: Iterable[str] = ()
) -> User:
    user = User.objects.create_user(username, f"{username}@example.invalid", "pw-123456!")
    user.is_staff = True
    user.save()
    for name in groups:
        user.groups.add(Group.objects.get(name=name))
    for dotted in permissions:
        app_label, codename = dotted.split(".")
        user.user_permissions.add(
            Permission.objects.get(content_type__app_label=app_label, codename=codename)
        )
    return User.objects.get(pk=user.pk)  # fresh: no cached permissions
