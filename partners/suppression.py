"""Suppression lists: a partner's existing customers, whom it does not want referred.

The partner never sends us a customer's number. It hashes each one under a key it shares
with the platform and uploads the hashes (``partners.suppression_api``); routing hashes the
applicant the same way inside the vault (``consent.suppression``) and skips a partner whose
list holds one of the applicant's hashes (reason code ``suppressed``).

How a partner computes a hash (``digest``), for each customer's phone number and each
national ID number, separately:

1. Normalise the value.
   - Phone: E.164 digits without the ``+``: keep the digits only; a mainland mobile number
     (11 digits, starting with 1) gets the country code 86 in front; a number already
     written with 86 or 0086 keeps 86 once. ``+86 138 0013 8000``, ``13800138000`` and
     ``0086-138-0013-8000`` are all ``8613800138000``.
   - National ID: every whitespace character removed, letters upper case:
     ``11010119900307123x`` is ``11010119900307123X``.
2. ``HMAC-SHA256(key, normalised value)``, with the key string (as shown once, ``sup_...``)
   and the value both as UTF-8 bytes; the digest as 64 lower-case hex characters.

Python: ``hmac.new(key.encode(), value.encode(), hashlib.sha256).hexdigest()``.

The key is per partner and key mode (the sandbox list is separate from the live one), stored
sealed (``partners.secretbox``) because the platform must use it. Rotating it empties the
list: hashes under the old key can never match again, so the partner uploads them anew.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import uuid
from collections.abc import Iterable

from django.db import transaction
from django.utils import timezone

from partners import secretbox
from partners.registry import SuppressionEntry, SuppressionKey

KEY_PREFIX = "sup_"
DIGEST = re.compile(r"[0-9a-f]{64}")
MAX_BATCH = 10_000  # hashes per upload request


def normalise_phone(value: str) -> str:
    digits = "".join(ch for ch in value if ch.isdigit())
    if digits.startswith("00"):
        digits = digits[2:]  # international call prefix
    if len(digits) == 11 and digits.startswith("1"):
        return "86" + digits  # a mainland mobile written without its country code
    return digits


def normalise_national_id(value: str) -> str:
    return "".join(value.split()).upper()


NORMALISERS = {"phone": normalise_phone, "national_id": normalise_national_id}


def digest(key: str, normalised: str) -> str:
    return hmac.new(key.encode(), normalised.encode(), hashlib.sha256).hexdigest()


def rotate_key(*, partner_id: uuid.UUID, is_sandbox: bool) -> str:
    """A new shared key for the partner's list in this mode, returned once (only its sealed
    form is kept); the list is emptied (see the module text)."""
    key = KEY_PREFIX + secrets.token_hex(32)
    with transaction.atomic():
        SuppressionKey.objects.update_or_create(
            partner_id=partner_id,
            is_sandbox=is_sandbox,
            defaults={"key_encrypted": secretbox.seal(key), "created_at": timezone.now()},
        )
        SuppressionEntry.objects.filter(partner_id=partner_id, is_sandbox=is_sandbox).delete()
    return key


def key_created_at(*, partner_id: uuid.UUID, is_sandbox: bool) -> object | None:
    return (
        SuppressionKey.objects.filter(partner_id=partner_id, is_sandbox=is_sandbox)
        .values_list("created_at", flat=True)
        .first()
    )


def keys_of(*, partner_ids: Iterable[uuid.UUID], is_sandbox: bool) -> dict[uuid.UUID, str]:
    """The shared keys of those of these partners that have one in this mode (one query)."""
    rows = SuppressionKey.objects.filter(
        partner_id__in=set(partner_ids), is_sandbox=is_sandbox
    ).values_list("partner_id", "key_encrypted")
    return {partner_id: secretbox.unseal(sealed) for partner_id, sealed in rows}


def add_digests(*, partner_id: uuid.UUID, is_sandbox: bool, digests: Iterable[str]) -> int:
    """Add hashes (already valid: lower-case hex, 64 characters) to the list; ones already
    listed are skipped. Returns how many were new."""
    wanted = set(digests)
    now = timezone.now()
    with transaction.atomic():
        listed = set(
            SuppressionEntry.objects.filter(
                partner_id=partner_id, is_sandbox=is_sandbox, digest__in=wanted
            ).values_list("digest", flat=True)
        )
        SuppressionEntry.objects.bulk_create(
            [
                SuppressionEntry(
                    partner_id=partner_id, is_sandbox=is_sandbox, digest=value, created_at=now
                )
                for value in sorted(wanted - listed)
            ],
            # A concurrent upload of the same hash: the unique constraint keeps one.
            ignore_conflicts=True,
        )
    return len(wanted - listed)


def count(*, partner_id: uuid.UUID, is_sandbox: bool) -> int:
    return SuppressionEntry.objects.filter(partner_id=partner_id, is_sandbox=is_sandbox).count()


def clear(*, partner_id: uuid.UUID, is_sandbox: bool) -> int:
    deleted, _ = SuppressionEntry.objects.filter(
        partner_id=partner_id, is_sandbox=is_sandbox
    ).delete()
    return deleted
