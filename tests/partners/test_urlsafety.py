"""Partner URLs must not reach into our own network (SSRF), and a malformed one is refused
cleanly rather than crashing the caller."""

from __future__ import annotations

import socket
from typing import Any

import pytest

from partners.urlsafety import UnsafeUrlError, check_partner_url


def resolving_to(address: str) -> Any:
    family = socket.AF_INET6 if ":" in address else socket.AF_INET

    def getaddrinfo(host: str, port: int, *args: Any, **kwargs: Any) -> list[Any]:
        return [(family, socket.SOCK_STREAM, 6, "", (address, port))]

    return getaddrinfo


@pytest.fixture
def production(settings: Any) -> None:
    settings.ALLOW_PRIVATE_PARTNER_URLS = False


@pytest.mark.parametrize(
    "url",
    [
        "ftp://partner.example/post",
        "file:///etc/passwd",
        "javascript:alert(1)",
        "/relative/post",
        "partner.example/post",
        "http:///post",
        "https://partner.example:99999/post",
        "http://[::1/post",
    ],
)
def test_non_http_relative_or_malformed_urls_are_refused_even_in_development(
    settings: Any, url: str
) -> None:
    settings.ALLOW_PRIVATE_PARTNER_URLS = True

    with pytest.raises(UnsafeUrlError):
        check_partner_url(url)


def test_loopback_http_is_allowed_when_private_urls_are_allowed(settings: Any) -> None:
    settings.ALLOW_PRIVATE_PARTNER_URLS = True

    check_partner_url("http://127.0.0.1:8080/post")


@pytest.mark.usefixtures("production")
def test_plain_http_is_refused_in_production() -> None:
    with pytest.raises(UnsafeUrlError, match="https"):
        check_partner_url("http://93.184.215.14/post")


@pytest.mark.usefixtures("production")
@pytest.mark.parametrize(
    "url",
    [
        "https://127.0.0.1/post",
        "https://127.1.2.3:8443/post",
        "https://10.0.0.5/post",
        "https://172.16.0.1/post",
        "https://192.168.1.10/post",
        "https://169.254.169.254/latest/meta-data",  # cloud metadata
        "https://0.0.0.0/post",
        "https://[::1]/post",
        "https://[fd00::1]/post",
        "https://[::ffff:127.0.0.1]/post",
        "https://100.64.0.1/post",  # carrier-grade NAT
    ],
)
def test_private_and_loopback_addresses_are_refused_in_production(url: str) -> None:
    with pytest.raises(UnsafeUrlError, match="non-public"):
        check_partner_url(url)


@pytest.mark.usefixtures("production")
def test_public_address_is_allowed_in_production() -> None:
    check_partner_url("https://93.184.215.14/post")


@pytest.mark.usefixtures("production")
def test_host_name_resolving_to_a_private_address_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(socket, "getaddrinfo", resolving_to("10.1.2.3"))

    with pytest.raises(UnsafeUrlError, match="non-public"):
        check_partner_url("https://partner.example/post")


@pytest.mark.usefixtures("production")
def test_host_name_resolving_to_a_public_address_is_allowed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(socket, "getaddrinfo", resolving_to("93.184.215.14"))

    check_partner_url("https://partner.example/post")


@pytest.mark.usefixtures("production")
def test_unresolvable_host_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*args: Any, **kwargs: Any) -> Any:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", fail)

    with pytest.raises(UnsafeUrlError, match="cannot resolve"):
        check_partner_url("https://no-such-partner.example/post")


@pytest.mark.usefixtures("production")
def test_host_name_that_cannot_be_encoded_is_refused() -> None:
    with pytest.raises(UnsafeUrlError, match="cannot resolve"):
        check_partner_url("https://" + "a" * 70 + ".example/post")
