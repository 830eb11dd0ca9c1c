from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from consent import crypto, master_keys


class Command(BaseCommand):
    help = (
        "Check that VAULT_MASTER_KEYS can serve this database: well-formed, the keys match "
        "the canaries stored with them, and every subject's key id is configured. Exits "
        "non-zero with a plain message otherwise."
    )
    requires_system_checks: list[str] = []  # report our own findings, not a check traceback

    def handle(self, *args: Any, **options: Any) -> None:
        problems = master_keys.vault_key_problems()
        if problems:
            for problem in problems:
                self.stderr.write(f"PROBLEM: {problem}")
            raise CommandError(f"vault keys are not usable ({len(problems)} problem(s))")
        master = crypto.master_keys()
        counts = master_keys.subjects_per_key_id()
        listed = ", ".join(
            f"{key_id!r}{' (active)' if key_id == master.active_id else ''}: "
            f"{counts.get(key_id, 0)} subject(s)"
            for key_id in master.keys
        )
        self.stdout.write(f"vault keys OK: {listed}")
