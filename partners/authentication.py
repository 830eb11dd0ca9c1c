"""DRF authentication by API key (``Authorization: Bearer <key>``) and key-kind permissions."""

from __future__ import annotations

import uuid
from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions, permissions
from rest_framework.request import Request

from partners.keys import authenticate_key
from partners.models import ApiKey, KeyKind, KeyMode


class ApiClient:
    """The caller behind an API key; stands in for ``request.user`` in API views."""

    is_authenticated = True
    is_anonymous = False

    def __init__(self, api_key: ApiKey) -> None:
        self.api_key = api_key

    @property
    def partner_id(self) -> uuid.UUID | None:
        return self.api_key.partner_id

    @property
    def source_id(self) -> uuid.UUID | None:
        return self.api_key.source_id

    @property
    def is_sandbox(self) -> bool:
        return self.api_key.mode == KeyMode.SANDBOX

    def __str__(self) -> str:
        return str(self.api_key)


class ApiKeyAuthentication(authentication.BaseAuthentication):
    keyword = "Bearer"

    def authenticate(self, request: Request) -> tuple[ApiClient, ApiKey] | None:
        header = authentication.get_authorization_header(request).decode("latin-1")
        if not header:
            return None
        scheme, _, token = header.partition(" ")
        # Auth schemes are case-insensitive (RFC 9110 11.1): "bearer <key>" is fine too.
        if scheme.lower() != self.keyword.lower() or not token.strip():
            raise exceptions.AuthenticationFailed("Use 'Authorization: Bearer <api key>'.")
        api_key = authenticate_key(token.strip())
        if api_key is None:
            raise exceptions.AuthenticationFailed("Unknown or revoked API key.")
        return ApiClient(api_key), api_key

    def authenticate_header(self, request: Request) -> str:
        return self.keyword


class ApiKeyAuthenticationScheme(OpenApiAuthenticationExtension):
    target_class = "partners.authentication.ApiKeyAuthentication"
    name = "ApiKey"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {"type": "http", "scheme": "bearer", "description": "An API key."}


class IsSourceKey(permissions.BasePermission):
    message = "This endpoint needs a source API key."

    def has_permission(self, request: Request, view: Any) -> bool:
        return isinstance(request.user, ApiClient) and request.user.api_key.kind == KeyKind.SOURCE


class IsPartnerKey(permissions.BasePermission):
    message = "This endpoint needs a partner API key."

    def has_permission(self, request: Request, view: Any) -> bool:
        return isinstance(request.user, ApiClient) and request.user.api_key.kind == KeyKind.PARTNER


def client(request: Request) -> ApiClient:
    user = request.user
    assert isinstance(user, ApiClient)
    return user
