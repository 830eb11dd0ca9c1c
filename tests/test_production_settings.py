"""Production settings, loaded in a subprocess with a production environment: Django's deploy
checks find nothing, and an insecure SECRET_KEY or DEBUG on stops the process at start."""

from __future__ import annotations

import base64
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings

ROOT = Path(__file__).resolve().parents[1]


def _production_env(var_dir: Path, **overrides: str) -> dict[str, str]:
    key = base64.b64encode(os.urandom(32)).decode()
    environment = {
        name: value
        for name, value in os.environ.items()
        # The test run's own settings must not leak into the production process.
        if name not in {"DEBUG", "DJANGO_SETTINGS_MODULE"} and not name.startswith("SECURE_")
    }
    environment.update(
        {
            "MARKETPLACE_ENV": "production",
            "MARKETPLACE_VAR_DIR": str(var_dir),
            "ALLOWED_HOSTS": "market.example.com",
            "SECRET_KEY": secrets.token_urlsafe(50),
            "VAULT_MASTER_KEYS": f"k1:{key}",
            "BLIND_INDEX_KEY": key,
            "API_KEY_PEPPER": key,
            "SECRETS_ENCRYPTION_KEY": key,
            "LEDGER_SIGNING_KEY": key,
        }
    )
    environment.update(overrides)
    return environment


def _manage(environment: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def test_check_deploy_with_production_settings_finds_nothing(tmp_path: Path) -> None:
    result = _manage(_production_env(tmp_path), "check", "--deploy", "--fail-level", "WARNING")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


def test_production_turns_on_https_only_settings(tmp_path: Path) -> None:
    code = (
        "from django.conf import settings as s; "
        "print(s.SECURE_SSL_REDIRECT, s.SECURE_HSTS_SECONDS, s.SESSION_COOKIE_SECURE, "
        "s.CSRF_COOKIE_SECURE, s.DEBUG)"
    )
    result = _manage(_production_env(tmp_path), "shell", "-v", "0", "-c", code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["True", "31536000", "True", "True", "False"]


@pytest.mark.parametrize(
    "secret_key",
    [
        "too-short-for-production",
        "a" * 64,  # long, but four distinct characters at most
        "django-insecure-" + secrets.token_urlsafe(50),
    ],
)
def test_production_refuses_a_weak_secret_key(tmp_path: Path, secret_key: str) -> None:
    result = _manage(_production_env(tmp_path, SECRET_KEY=secret_key), "check")
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert "SECRET_KEY of at least 50 characters" in result.stderr
    assert secret_key not in result.stderr  # the refusal does not print the secret


def test_production_refuses_debug_on(tmp_path: Path) -> None:
    result = _manage(_production_env(tmp_path, DEBUG="true"), "check")
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert "refuses DEBUG=true" in result.stderr


def test_development_defaults_serve_plain_http() -> None:
    """`make run` serves http on 127.0.0.1: no redirect to https, no https-only cookies."""
    assert not settings.SECURE_SSL_REDIRECT
    assert settings.SECURE_HSTS_SECONDS == 0
    assert not settings.SESSION_COOKIE_SECURE and not settings.CSRF_COOKIE_SECURE
