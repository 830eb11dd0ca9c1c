"""API keys: ``<prefix>_<mode>_<lookup>_<secret>``, stored as lookup prefix + keyed hash."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from partners.models import ApiKey, KeyKind, KeyMode, Partner, PartnerStatus, TrafficSource

# last_used_at is advisory; writing it on every request would make each call a write.
LAST_USED_RESOLUTION = timedelta(minutes=1)


def _pepper() -> bytes:
    return settings.API_KEY_PEPPER.encode()


def hash_key(plaintext: str) -> str:
    return hmac.new(_pepper(), plaintext.encode(), hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class IssuedKey:
    api_key: ApiKey
    plaintext: str  # shown once, never stored


def issue_api_key(
    *,
    partner: Partner | None = None,
    source: TrafficSource | None = None,
    mode: str = KeyMode.LIVE,
    name: str = "",
) -> IssuedKey:
    if (partner is None) == (source is None):
        raise ValueError("an API key belongs to exactly one partner or one source")
    kind = KeyKind.PARTNER if partner is not None else KeyKind.SOURCE
    lookup = secrets.token_hex(6)
    plaintext = f"{settings.API_KEY_PREFIX}_{mode}_{lookup}_{secrets.token_urlsafe(32)}"
    api_key = ApiKey.objects.create(
        kind=kind,
        mode=mode,
        partner=partner,
        source=source,
        name=name,
        prefix=lookup,
        key_hash=hash_key(plaintext),
    )
    return IssuedKey(api_key=api_key, plaintext=plaintext)


def authenticate_key(plaintext: str) -> ApiKey | None:
    """The live, unrevoked key for this plaintext, or None. Constant-time comparison."""
    parts = plaintext.split("_")
    if len(parts) < 4:
        return None
    lookup = parts[2]
    api_key = (
        ApiKey.objects.select_related("partner", "source")
        .filter(prefix=lookup, revoked_at__isnull=True)
        .first()
    )
    if api_key is None or not hmac.compare_digest(api_key.key_hash, hash_key(plaintext)):
        return None
    if api_key.partner is not None and api_key.partner.status == PartnerStatus.OFFBOARDED:
        return None  # an offboarded partner's keys stop working with it
    now = timezone.now()
    if api_key.last_used_at is None or now - api_key.last_used_at > LAST_USED_RESOLUTION:
        ApiKey.objects.filter(pk=api_key.pk).update(last_used_at=now)
        api_key.last_used_at = now
    return api_key


def revoke_api_key(*, api_key: ApiKey) -> None:
    ApiKey.objects.filter(pk=api_key.pk, revoked_at__isnull=True).update(revoked_at=timezone.now())
