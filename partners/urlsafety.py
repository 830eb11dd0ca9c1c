"""Partner endpoint URLs must not point into our own network (SSRF).

Two checks, one rule. :func:`check_url_form` needs no DNS (scheme, host, port; https in
production). :func:`public_addresses` resolves a host once and refuses it unless every
address is public; the outbound client (``partners.http``) calls it at connect time and
connects to exactly the addresses it checked, so a name that resolves to a public address
for the check and to a private one for the connection (DNS rebinding) gets nowhere.
:func:`check_partner_url` is both at once, for validating a URL before it is stored or
before personal data is prepared for it.
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

from django.conf import settings


class UnsafeUrlError(ValueError):
    """The URL is refused: it is malformed, or it leads somewhere we must not connect."""


class MalformedUrlError(UnsafeUrlError):
    """The URL is not an absolute http(s) URL we can parse: fixing the URL is the remedy."""


def private_allowed() -> bool:
    return bool(settings.ALLOW_PRIVATE_PARTNER_URLS)


def check_url_form(url: str) -> tuple[str, int]:
    """(host, port) of url, or UnsafeUrlError: absolute http(s), https unless private
    URLs are allowed. No DNS."""
    try:
        parts = urlsplit(url)
        port = parts.port  # parsed lazily: "host:99999" or "[::1" only fail here
    except ValueError:
        raise MalformedUrlError("partner URL is malformed") from None
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise MalformedUrlError("partner URLs must be absolute http(s) URLs")
    if parts.scheme != "https" and not private_allowed():
        raise UnsafeUrlError("partner URLs must use https")
    return parts.hostname, port or (443 if parts.scheme == "https" else 80)


class UnresolvableHostError(UnsafeUrlError):
    """The host name has no address (now): possibly passing, unlike a refusal."""


def resolve(host: str, port: int) -> list[str]:
    """The addresses of host, resolved once (an IP literal is its own address). A name
    IDNA cannot encode raises UnicodeError (a bad URL, not a missing host)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror:
        raise UnresolvableHostError(f"cannot resolve host {host!r}") from None
    addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    if not addresses:
        raise UnresolvableHostError(f"cannot resolve host {host!r}")
    return addresses


def public_addresses(host: str, port: int) -> list[str]:
    """Resolve host once; its addresses, all public, or UnsafeUrlError."""
    addresses = resolve(host, port)
    for address in addresses:
        if not ipaddress.ip_address(address.split("%", 1)[0]).is_global:
            raise UnsafeUrlError(f"{host!r} resolves to a non-public address")
    return addresses


def check_partner_url(url: str) -> None:
    """Raise UnsafeUrlError unless url is http(s) to a public address (or private is allowed)."""
    host, port = check_url_form(url)
    if not private_allowed():
        try:
            public_addresses(host, port)
        except UnicodeError:  # a host name IDNA cannot encode
            raise UnsafeUrlError(f"cannot resolve host {host!r}") from None
