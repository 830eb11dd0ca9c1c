"""Standard Webhooks signing (https://www.standardwebhooks.com/) for everything we send."""

from __future__ import annotations

import base64
import secrets
import uuid
from datetime import UTC, datetime

from standardwebhooks.webhooks import Webhook

from partners import secretbox
from partners.models import Partner, WebhookEndpoint


def new_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


def signed_headers(secret: str, payload: bytes, msg_id: str | None = None) -> dict[str, str]:
    msg_id = msg_id or f"msg_{uuid.uuid4().hex}"
    now = datetime.now(tz=UTC)
    signature = Webhook(secret).sign(msg_id, now, payload.decode())
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": signature,
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
