"""Envelope encryption for the vault: per-subject data keys wrapped by master keys.

Field ciphertexts are ``nonce(12) || AES-256-GCM(data key, value)`` with the subject id and
field name as associated data, so a ciphertext moved to another row or column fails to
decrypt instead of revealing the wrong person's data.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import os
import uuid
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from django.conf import settings

NONCE_BYTES = 12


class VaultKeyError(RuntimeError):
    """The configured keys cannot serve the vault (missing, malformed or wrong)."""


@dataclass(frozen=True)
class MasterKeys:
    active_id: str
    keys: dict[str, bytes]


def parse_master_keys(raw: str) -> MasterKeys:
    keys: dict[str, bytes] = {}
    active = ""
    for item in (part.strip() for part in raw.split(",")):
        if not item:
            continue
        key_id, sep, b64 = item.partition(":")
        try:
            key = base64.b64decode(b64, validate=True)
        except ValueError:
            key = b""
        if not sep or not key_id or len(key) != 32:
            raise VaultKeyError(
                "VAULT_MASTER_KEYS must be 'key-id:base64 of 32 bytes', comma-separated"
            )
        keys[key_id] = key
        active = active or key_id
    if not keys:
        raise VaultKeyError("VAULT_MASTER_KEYS is empty: the vault cannot encrypt anything")
    return MasterKeys(active_id=active, keys=keys)


@functools.cache
def _master_keys_for(raw: str) -> MasterKeys:
    return parse_master_keys(raw)


def master_keys() -> MasterKeys:
    return _master_keys_for(settings.VAULT_MASTER_KEYS)


def _seal(key: bytes, plaintext: bytes, aad: bytes) -> bytes:
    nonce = os.urandom(NONCE_BYTES)
    return nonce + AESGCM(key).encrypt(nonce, plaintext, aad)


def _open(key: bytes, sealed: bytes, aad: bytes) -> bytes:
    return AESGCM(key).decrypt(sealed[:NONCE_BYTES], sealed[NONCE_BYTES:], aad)


def new_data_key() -> bytes:
    return AESGCM.generate_key(bit_length=256)


def wrap_data_key(
    data_key: bytes, subject_id: uuid.UUID, key_id: str | None = None
) -> tuple[str, bytes]:
    keys = master_keys()
    key_id = key_id or keys.active_id
    if key_id not in keys.keys:
        raise VaultKeyError(f"master key {key_id!r} is not configured")
    return key_id, _seal(keys.keys[key_id], data_key, b"subject-key:" + subject_id.bytes)


def unwrap_data_key(wrapped: bytes | memoryview, subject_id: uuid.UUID, key_id: str) -> bytes:
    keys = master_keys()
    if key_id not in keys.keys:
        raise VaultKeyError(
            f"master key {key_id!r} is not configured (VAULT_MASTER_KEYS): cannot decrypt"
        )
    try:
        return _open(keys.keys[key_id], bytes(wrapped), b"subject-key:" + subject_id.bytes)
    except InvalidTag:
        raise VaultKeyError(f"master key {key_id!r} does not match the stored data") from None


def encrypt_field(data_key: bytes, subject_id: uuid.UUID, field: str, value: str) -> bytes:
    return _seal(data_key, value.encode(), f"{subject_id}:{field}".encode())


def decrypt_field(
    data_key: bytes, subject_id: uuid.UUID, field: str, sealed: bytes | memoryview
) -> str:
    return _open(data_key, bytes(sealed), f"{subject_id}:{field}".encode()).decode()


CANARY = b"decline-marketplace vault canary v1"


def seal_canary(key_id: str) -> bytes:
    return _seal(master_keys().keys[key_id], CANARY, b"canary:" + key_id.encode())


def check_canary(key_id: str, sealed: bytes | memoryview) -> bool:
    try:
        return _open(master_keys().keys[key_id], bytes(sealed), b"canary:" + key_id.encode()) == (
            CANARY
        )
    except InvalidTag:
        return False


def blind_index(field: str, normalised_value: str) -> str:
    """HMAC-SHA256 under a key separate from the encryption keys; never a plain hash."""
    key = base64.b64decode(settings.BLIND_INDEX_KEY)
    return hmac.new(key, f"{field}:{normalised_value}".encode(), hashlib.sha256).hexdigest()


def normalise_phone(value: str) -> str:
    digits = "".join(ch for ch in value if ch.isdigit())
    # Mainland numbers are written with or without the +86 / 0086 country code.
    for prefix in ("0086", "86"):
        if digits.startswith(prefix) and len(digits) == len(prefix) + 11:
            return digits[len(prefix) :]
    return digits


def normalise_national_id(value: str) -> str:
    return "".join(value.split()).upper()
