from __future__ import annotations

import base64
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from django.core.management.base import BaseCommand, CommandError, CommandParser

from consent.ledger import verify_ledger
from partners.progress import progress_bar


def _pending(count: int) -> str:
    if not count:
        return ""
    return f"; {count} entries pending sequencing (not yet checkable; see sequence_ledger)"


class Command(BaseCommand):
    help = (
        "Recompute every consent-ledger entry and checkpoint; exit non-zero and name the "
        "first bad entry on any tampering."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--public-key",
            default="",
            help="base64 Ed25519 public key to check signatures against (default: our own)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        key = None
        if options["public_key"]:
            try:
                key = Ed25519PublicKey.from_public_bytes(base64.b64decode(options["public_key"]))
            except ValueError:
                raise CommandError("--public-key is not a base64 Ed25519 public key") from None
        with progress_bar(
            self, description="Ledger entries", verbosity=options["verbosity"]
        ) as bar:
            report = verify_ledger(
                key=key, progress=lambda done, total: bar.update(completed=done, total=total)
            )
        if not report.ok:
            for problem in report.problems[:50]:
                self.stderr.write(f"TAMPERED: {problem}")
            if len(report.problems) > 50:
                self.stderr.write(f"... and {len(report.problems) - 50} more problems")
            first = report.first_bad_seq
            raise CommandError(
                f"consent ledger verification FAILED ({len(report.problems)} problem(s); first "
                f"bad entry: {first if first is not None else 'see checkpoints above'}); "
                f"{report.entries_checked} entries and {report.checkpoints_checked} checkpoints "
                f"checked{_pending(report.pending)}"
            )
        self.stdout.write(
            f"consent ledger OK: {report.entries_checked} entries and "
            f"{report.checkpoints_checked} signed checkpoints verified" + _pending(report.pending)
        )
