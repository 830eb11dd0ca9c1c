"""Inviting partner staff to the portal: an email-free link the operator passes on.

``issue_invitation`` makes the invitation and returns its token once; only the token's
SHA-256 is stored (the token carries 256 random bits, so a keyed or slow hash buys
nothing). ``accept_invitation`` turns a valid token into an account with partner-staff
access to the invitation's partner (``partners.permissions.grant_partner_access``), in one
transaction with the invitation row locked, so a token works once however often it is
posted. ``revoke_invitation`` closes an open invitation, and takes the partner away from
the account made with a used one (``partners.permissions.revoke_partner_access``).
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.contrib.auth import get_user_model, password_validation
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from partners.models import Partner
from partners.permissions import grant_partner_access, revoke_partner_access
from portal.models import PartnerInvitation

INVITATION_TTL = timedelta(days=7)


class InvitationError(ValueError):
    """An invitation that cannot be accepted; ``field`` names the input at fault."""

    def __init__(self, message: str, *, field: str = "token") -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class IssuedInvitation:
    invitation: PartnerInvitation
    token: str  # shown once to the operator, never stored


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def issue_invitation(
    *,
    partner: Partner,
    name: str,
    email: str,
    manage: bool = True,
    created_by: Any = None,
    ttl: timedelta = INVITATION_TTL,
) -> IssuedInvitation:
    token = secrets.token_urlsafe(32)
    invitation = PartnerInvitation.objects.create(
        partner=partner,
        name=name,
        email=email,
        manage=manage,
        token_hash=hash_token(token),
        created_by=created_by if getattr(created_by, "pk", None) else None,
        expires_at=timezone.now() + ttl,
    )
    return IssuedInvitation(invitation=invitation, token=token)


def open_invitation(token: str) -> PartnerInvitation | None:
    """The invitation this token opens, if it can still be used."""
    if not token or len(token) > 100:
        return None
    return (
        PartnerInvitation.objects.select_related("partner")
        .filter(
            token_hash=hash_token(token),
            used_at__isnull=True,
            revoked_at__isnull=True,
            expires_at__gt=timezone.now(),
        )
        .first()
    )


def accept_invitation(*, token: str, username: str, password: str) -> Any:
    """A new account for the invitee, partner staff of the invitation's partner."""
    user_model = get_user_model()
    with transaction.atomic():
        invitation = (
            PartnerInvitation.objects.select_for_update(of=("self",))
            .select_related("partner")
            .filter(token_hash=hash_token(token))
            .first()
            if token and len(token) <= 100
            else None
        )
        now = timezone.now()
        if (
            invitation is None
            or invitation.used_at is not None
            or invitation.revoked_at is not None
            or invitation.expires_at <= now
        ):
            raise InvitationError("This invitation link is not valid (used, expired or revoked).")
        username = username.strip()
        if not username:
            raise InvitationError("Choose a username.", field="username")
        if user_model._default_manager.filter(username__iexact=username).exists():
            raise InvitationError("This username is taken.", field="username")
        user = user_model(username=username, first_name=invitation.name[:150])
        user.email = invitation.email
        try:
            user.full_clean(exclude=["password"])
        except ValidationError as exc:
            messages = exc.message_dict.get("username") or ["Choose another username."]
            raise InvitationError(" ".join(messages), field="username") from None
        try:
            password_validation.validate_password(password, user)
        except ValidationError as exc:
            raise InvitationError(" ".join(exc.messages), field="password") from None
        user.set_password(password)
        user.save()
        grant_partner_access(user=user, partner=invitation.partner, manage=invitation.manage)
        invitation.used_at = now
        invitation.user = user
        invitation.save(update_fields=["used_at", "user"])
    return user


def revoke_invitation(*, invitation_id: Any) -> bool:
    """Close the invitation; if it was used, the account loses this partner. False when it
    was revoked before."""
    with transaction.atomic():
        # Only the invitation's row is locked (its user is an outer join).
        invitation = (
            PartnerInvitation.objects.select_for_update(of=("self",))
            .select_related("partner", "user")
            .get(pk=invitation_id)
        )
        if invitation.revoked_at is not None:
            return False
        invitation.revoked_at = timezone.now()
        invitation.save(update_fields=["revoked_at"])
        if invitation.user is not None:
            revoke_partner_access(user=invitation.user, partner=invitation.partner)
    return True


def status_of(invitation: PartnerInvitation) -> str:
    if invitation.revoked_at is not None:
        return "revoked"
    if invitation.used_at is not None:
        return "used"
    return "expired" if invitation.expires_at <= timezone.now() else "open"
