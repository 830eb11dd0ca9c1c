"""What a key's mode lets it do beyond reading its own rows (``partners.scoping``): a sandbox
key reads configuration but does not change it, has no billing documents, and every ledger
entry written through the API records which key acted."""

from __future__ import annotations

from rest_framework import status
from rest_framework.request import Request

from partners.authentication import ApiClient
from partners.errors import ApiError
from partners.scoping import caller


def require_live_key(request_or_client: Request | ApiClient, action: str) -> None:
    """Refuse (403 ``live_key_required``) a change that only a live key may make."""
    if caller(request_or_client).is_sandbox:
        raise ApiError(
            f"{action} needs a live key: sandbox keys read configuration but do not change it.",
            code="live_key_required",
            status_code=status.HTTP_403_FORBIDDEN,
        )


def require_live_billing(request_or_client: Request | ApiClient) -> None:
    """Refuse (404 ``no_sandbox_billing``) a billing document asked for with a sandbox key."""
    if caller(request_or_client).is_sandbox:
        raise ApiError(
            "Sandbox traffic is never charged: there are no sandbox invoices or statement. "
            "Use a live key.",
            code="no_sandbox_billing",
            status_code=status.HTTP_404_NOT_FOUND,
        )


def acting_key(request_or_client: Request | ApiClient) -> dict[str, str]:
    """Which key acted, for ledger entries written through the API: the key's public lookup
    prefix (as ``GET /partner/me`` shows it) and its mode. Never the secret, never a name."""
    api_key = caller(request_or_client).api_key
    return {"prefix": api_key.prefix, "mode": str(api_key.mode)}
