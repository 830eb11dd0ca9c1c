"""Standard Webhooks signing (https://www.standardwebhooks.com/) for everything we send."""

from __future__ import annotations

import base64
import secrets
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime

from standardwebhooks.webhooks import Webhook

from partners import secretbox
from partners.models import Partner, WebhookEndpoint


def new_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


def sign(secret: str, msg_id: str, at: datetime, payload: bytes) -> str:
    """``v1,<base64 HMAC-SHA256>`` over ``id.timestamp.payload``, by the official library."""
    return Webhook(secret).sign(msg_id, at, payload.decode())


def signed_headers(
    secrets: str | Sequence[str],
    payload: bytes,
    msg_id: str | None = None,
    at: datetime | None = None,
) -> dict[str, str]:
    """Standard Webhooks headers. Several secrets (during a rotation) give several
    space-separated signatures; a verifier accepts any one it can check."""
    msg_id = msg_id or f"msg_{uuid.uuid4().hex}"
    at = at or datetime.now(tz=UTC)
    keys = [secrets] if isinstance(secrets, str) else list(secrets)
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": " ".join(sign(key, msg_id, at, payload) for key in keys),
        "content-type": "application/json",
    }


def create_endpoint(*, partner: Partner, url: str) -> tuple[WebhookEndpoint, str]:
    """A new endpoint and its secret (returned once, stored encrypted)."""
    secret = new_secret()
    endpoint = WebhookEndpoint.objects.create(
        partner=partner, url=url, secret_encrypted=secretbox.seal(secret)
    )
    return endpoint, secret


def signing_secret(partner: Partner) -> str | None:
    endpoint = partner.webhooks.filter(is_active=True).order_by("-created_at").first()
    return secretbox.unseal(endpoint.secret_encrypted) if endpoint else None
