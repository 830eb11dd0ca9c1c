"""The platform refuses to start with vault keys that cannot serve it.

Two layers, because they need different things:

* ``check_vault_config`` is a Django system check (tag ``vault``): a missing or malformed
  ``VAULT_MASTER_KEYS`` fails ``manage.py check``, ``runserver`` and every command that runs
  system checks. It reads settings only, never the database, so it is safe everywhere
  (including ``migrate`` on an empty database).
* ``verify_vault_at_startup`` also asks the database (the active key's canary, subjects
  under unconfigured key ids). It runs where data is written and read: when a web process
  loads ``marketplace.wsgi`` and when a Celery worker starts (``worker_init``). It is not a
  system check, so ``migrate``, ``makemigrations`` and the test suite never depend on the
  database's keys. A database that cannot be reached or is not migrated yet is logged and
  left to the write path, which checks the canary again before writing anything
  (``vault.ensure_master_key_usable``).
"""

from __future__ import annotations

import logging
from typing import Any

from django.core import checks
from django.core.exceptions import ImproperlyConfigured
from django.db import DatabaseError

from consent import master_keys

logger = logging.getLogger(__name__)


@checks.register("vault")
def check_vault_config(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    return [
        checks.Error(
            problem,
            hint="VAULT_MASTER_KEYS='active-id:base64(32 bytes)[,older-id:base64...]'",
            id="consent.E001",
        )
        for problem in master_keys.config_problems()
    ]


def verify_vault_at_startup() -> None:
    """Raise ImproperlyConfigured, with a plain message, if the vault keys are unusable."""
    problems = master_keys.config_problems()
    if not problems:
        try:
            problems = master_keys.vault_key_problems()
        except DatabaseError as exc:
            logger.warning(
                "vault key check skipped at start-up: the database is not ready (%s); "
                "writes still check the key before storing anything",
                exc.__class__.__name__,
            )
            return
    if problems:
        raise ImproperlyConfigured("vault keys: " + "; ".join(problems))
