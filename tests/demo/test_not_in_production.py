"""The demo and the partner simulator are development tools: production settings leave them
out, so their commands (which create an admin and demo partners) do not exist there."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DEMO_COMMANDS = {"seed_demo", "simulate", "simulate_partners"}


def _commands(environment: str, var_dir: Path) -> set[str]:
    key = base64.b64encode(os.urandom(32)).decode()
    secrets = {
        "SECRET_KEY": "test-" + key + key,  # production refuses fewer than 50 characters
        "VAULT_MASTER_KEYS": f"k1:{key}",
        "BLIND_INDEX_KEY": key,
        "API_KEY_PEPPER": key,
        "SECRETS_ENCRYPTION_KEY": key,
        "LEDGER_SIGNING_KEY": key,
    }
    env = {
        **os.environ,
        **secrets,
        "MARKETPLACE_ENV": environment,
        "MARKETPLACE_VAR_DIR": str(var_dir),
    }
    result = subprocess.run(
        [sys.executable, "manage.py", "help", "--commands"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return set(result.stdout.split())


def test_production_settings_do_not_install_the_demo_commands(tmp_path: Path) -> None:
    commands = _commands("production", tmp_path)
    assert "reconcile" in commands  # the product's own commands are there
    assert not DEMO_COMMANDS & commands


def test_development_settings_install_the_demo_commands(tmp_path: Path) -> None:
    assert _commands("development", tmp_path) >= DEMO_COMMANDS
