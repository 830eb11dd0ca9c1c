"""Partner endpoint URLs must not point into our own network (SSRF)."""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

from django.conf import settings


class UnsafeUrlError(ValueError):
    pass


def check_partner_url(url: str) -> None:
    """Raise UnsafeUrlError unless url is http(s) to a public address (or private is allowed)."""
    try:
        parts = urlsplit(url)
        port = parts.port  # parsed lazily: "host:99999" or "[::1" only fail here
    except ValueError:
        raise UnsafeUrlError("partner URL is malformed") from None
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise UnsafeUrlError("partner URLs must be absolute http(s) URLs")
    if settings.ALLOW_PRIVATE_PARTNER_URLS:
        return
    if parts.scheme != "https":
        raise UnsafeUrlError("partner URLs must use https")
    try:
        infos = socket.getaddrinfo(parts.hostname, port or 443)
    except (socket.gaierror, UnicodeError):  # UnicodeError: a host name IDNA cannot encode
        raise UnsafeUrlError(f"cannot resolve host {parts.hostname!r}") from None
    for info in infos:
        address = ipaddress.ip_address(info[4][0])
        if not address.is_global:
            raise UnsafeUrlError(f"{parts.hostname!r} resolves to a non-public address")
