"""Encryption for secrets we must read back (webhook signing secrets), with Fernet."""

from __future__ import annotations

import base64

from cryptography.fernet import Fernet
from django.conf import settings


def _fernet() -> Fernet:
    raw = base64.b64decode(settings.SECRETS_ENCRYPTION_KEY)
    return Fernet(base64.urlsafe_b64encode(raw))


def seal(plaintext: str) -> bytes:
    return _fernet().encrypt(plaintext.encode())


def unseal(token: bytes | memoryview) -> str:
    return _fernet().decrypt(bytes(token)).decode()
