"""Encryption for secrets we must read back (webhook signing secrets), with Fernet."""

from __future__ import annotations

import base64
import functools

from cryptography.fernet import Fernet
from django.conf import settings


def _fernet() -> Fernet:
    raw = base64.b64decode(settings.SECRETS_ENCRYPTION_KEY)
    return Fernet(base64.urlsafe_b64encode(raw))


def seal(plaintext: str) -> bytes:
    return _fernet().encrypt(plaintext.encode())


def unseal(token: bytes | memoryview) -> str:
    # Webhook and ping signing decrypt the same few secrets over and over; a sealed token
    # never changes (rotation seals a new one), so each is decrypted once per process.
    return _unseal(settings.SECRETS_ENCRYPTION_KEY, bytes(token))


@functools.lru_cache(maxsize=1024)
def _unseal(key: str, token: bytes) -> str:
    return _fernet().decrypt(token).decode()
