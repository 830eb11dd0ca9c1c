"""The admin login form locks out a username, and an address, after repeated failures
(django-axes): then even the right password is refused with 429 until the cool-off ends."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from axes.models import AccessAttempt
from django.conf import settings
from django.contrib.auth import get_user_model
from django.test import Client, RequestFactory, override_settings
from django.utils import timezone

from partners.client_address import client_address

pytestmark = pytest.mark.django_db

LOGIN = "/admin/login/"
PASSWORD = "pw-123456!"
LIMIT = settings.AXES_FAILURE_LIMIT


@pytest.fixture(autouse=True)
def staff(settings: Any) -> None:
    # A fast hasher: the test is about counting attempts, not about PBKDF2's cost.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    for name in ("ops", "finance"):
        get_user_model().objects.create_user(name, password=PASSWORD, is_staff=True)


def _login(username: str, password: str, address: str = "203.0.113.7", **headers: str) -> int:
    response = Client().post(
        LOGIN,
        {"username": username, "password": password, "next": "/admin/"},
        REMOTE_ADDR=address,
        **headers,
    )
    return response.status_code


def _fail(times: int, username: str, address: str = "203.0.113.7", **headers: str) -> None:
    for _ in range(times):
        # The form's error; the failure that reaches the limit is answered with the lockout.
        assert _login(username, "wrong-password", address, **headers) in (200, 429)


def test_settings_lock_after_five_failures_for_fifteen_minutes() -> None:
    cool_off: timedelta = settings.AXES_COOLOFF_TIME
    assert LIMIT == 5
    assert cool_off == timedelta(minutes=15)


def test_right_password_works_before_the_limit() -> None:
    for _ in range(LIMIT - 1):
        assert _login("ops", "wrong-password") == 200
    assert _login("ops", PASSWORD) == 302


def test_account_is_locked_after_repeated_failures_from_many_addresses() -> None:
    for n in range(LIMIT):
        _fail(1, "ops", address=f"198.51.100.{n + 1}")
    assert _login("ops", PASSWORD, address="192.0.2.200") == 429
    assert _login("finance", PASSWORD, address="192.0.2.200") == 302  # others unaffected


def test_address_is_locked_after_failures_across_usernames() -> None:
    for n in range(LIMIT):
        _fail(1, f"guess-{n}", address="198.51.100.9")
    assert _login("finance", PASSWORD, address="198.51.100.9") == 429
    assert _login("finance", PASSWORD, address="198.51.100.10") == 302


def test_lockout_ends_after_the_cool_off() -> None:
    _fail(LIMIT, "ops")
    assert _login("ops", PASSWORD) == 429
    AccessAttempt.objects.update(attempt_time=timezone.now() - timedelta(minutes=16))
    assert _login("ops", PASSWORD) == 302


def test_success_resets_the_count() -> None:
    _fail(LIMIT - 1, "ops")
    assert _login("ops", PASSWORD) == 302
    _fail(LIMIT - 1, "ops")
    assert _login("ops", PASSWORD) == 302


@override_settings(TRUSTED_PROXY_COUNT=1)
def test_behind_a_proxy_forged_forwarded_addresses_do_not_escape_the_lockout() -> None:
    # The load balancer (REMOTE_ADDR 10.0.0.2) appends the address it saw; what the client
    # wrote to the left of it changes every time and must not matter.
    for n in range(LIMIT):
        forwarded = f"192.0.2.{n}, 198.51.100.77"
        _fail(1, f"guess-{n}", address="10.0.0.2", HTTP_X_FORWARDED_FOR=forwarded)
    forwarded = "192.0.2.99, 198.51.100.77"
    assert _login("finance", PASSWORD, "10.0.0.2", HTTP_X_FORWARDED_FOR=forwarded) == 429
    # Another client behind the same load balancer still gets in.
    assert _login("finance", PASSWORD, "10.0.0.2", HTTP_X_FORWARDED_FOR="198.51.100.78") == 302


@pytest.mark.parametrize(
    ("proxies", "forwarded", "expected"),
    [
        (0, "192.0.2.1", "10.0.0.2"),  # no trusted proxy: the header is the client's claim
        (1, "192.0.2.1, 198.51.100.7", "198.51.100.7"),
        (2, "192.0.2.1, 198.51.100.7, 10.1.1.1", "198.51.100.7"),
        (2, "198.51.100.7", "10.0.0.2"),  # fewer hops than proxies: not trusted
    ],
)
def test_client_address_counts_trusted_proxies_from_the_right(
    proxies: int, forwarded: str, expected: str
) -> None:
    request = RequestFactory().get("/", REMOTE_ADDR="10.0.0.2", HTTP_X_FORWARDED_FOR=forwarded)
    with override_settings(TRUSTED_PROXY_COUNT=proxies):
        assert client_address(request) == expected
