"""The platform refuses to start with vault keys that cannot serve it: a system check for
the configuration, check_vault_keys and the start-up check for the database's keys."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from django.core import checks
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import transaction

from consent import crypto, vault
from consent.checks import verify_vault_at_startup
from consent.models import Subject
from marketplace.celery import refuse_unusable_vault_keys
from tests.consent.conftest import MakeApplicant, new_b64_key

ROOT = Path(__file__).resolve().parents[2]


def _use_keys(settings: Any, value: str) -> None:
    settings.VAULT_MASTER_KEYS = value
    crypto._master_keys_for.cache_clear()
    vault._checked_key_ids.clear()


def _check_command() -> str:
    out = io.StringIO()
    call_command("check_vault_keys", stdout=out, stderr=io.StringIO())
    return out.getvalue()


@pytest.fixture
def stored(db: None, vault_keys: dict[str, str], make_applicant: MakeApplicant) -> str:
    """One subject written under test-1; returns the configured value."""
    with transaction.atomic():
        vault.store_subject(applicant=make_applicant(), is_sandbox=False)
    return f"test-1:{vault_keys['master']}"


# --- System check (configuration only) -----------------------------------------------------


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("", "VAULT_MASTER_KEYS is not set"),
        (",", "VAULT_MASTER_KEYS is empty"),
        ("test-1:c2hvcnQ=", "VAULT_MASTER_KEYS must be 'key-id:base64 of 32 bytes'"),
        ("no-separator", "VAULT_MASTER_KEYS must be"),
    ],
)
def test_system_check_reports_missing_or_malformed_keys(
    settings: Any, value: str, message: str
) -> None:
    _use_keys(settings, value)

    errors = checks.run_checks(tags=["vault"])

    assert [e.id for e in errors] == ["consent.E001"]
    assert message in errors[0].msg


def test_system_check_passes_well_formed_keys(settings: Any) -> None:
    _use_keys(settings, f"new:{new_b64_key()},old:{new_b64_key()}")

    assert checks.run_checks(tags=["vault"]) == []


# --- Against the database --------------------------------------------------------------------


def test_check_command_reports_keys_and_counts(stored: str, settings: Any) -> None:
    _use_keys(settings, f"test-2:{new_b64_key()},{stored}")

    out = _check_command()

    assert out.strip() == "vault keys OK: 'test-2' (active): 0 subject(s), 'test-1': 1 subject(s)"
    verify_vault_at_startup()
    refuse_unusable_vault_keys()


def test_wrong_active_key_is_refused_everywhere(stored: str, settings: Any) -> None:
    _use_keys(settings, f"test-1:{new_b64_key()}")  # same id, other bytes

    with pytest.raises(CommandError, match="1 problem"):
        _check_command()
    with pytest.raises(ImproperlyConfigured, match="'test-1' is not the one this database"):
        verify_vault_at_startup()
    with pytest.raises(SystemExit, match="refusing to start the worker"):
        refuse_unusable_vault_keys()


def test_subjects_under_an_unconfigured_key_are_refused(stored: str, settings: Any) -> None:
    _use_keys(settings, f"test-2:{new_b64_key()}")

    err = io.StringIO()
    with pytest.raises(CommandError):
        call_command("check_vault_keys", stdout=io.StringIO(), stderr=err)
    with pytest.raises(ImproperlyConfigured, match="1 subject"):
        verify_vault_at_startup()

    assert "PROBLEM: 1 subject(s) are wrapped under master key 'test-1'" in err.getvalue()
    assert Subject.objects.count() == 1


def test_malformed_keys_are_refused_by_the_command(db: None, settings: Any) -> None:
    _use_keys(settings, "test-1:???")

    with pytest.raises(CommandError):
        _check_command()
    with pytest.raises(ImproperlyConfigured, match="VAULT_MASTER_KEYS must be"):
        verify_vault_at_startup()


def test_a_fresh_database_with_no_canary_yet_is_fine(db: None, vault_keys: dict[str, str]) -> None:
    verify_vault_at_startup()
    assert "'test-1' (active): 0 subject(s)" in _check_command()


def test_the_web_process_refuses_to_start_with_malformed_keys(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "VAULT_MASTER_KEYS": "primary:not-a-key",
        "MARKETPLACE_VAR_DIR": str(tmp_path),
        "DJANGO_SETTINGS_MODULE": "marketplace.settings",
    }
    env.pop("DATABASE_URL", None)

    result = subprocess.run(
        [sys.executable, "-c", "import marketplace.wsgi"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert result.returncode != 0
    assert "ImproperlyConfigured: vault keys: VAULT_MASTER_KEYS must be" in result.stderr
