from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from consent.crypto import VaultKeyError
from consent.master_keys import BATCH_SIZE, RotationRefused, RotationReport, rotate_subject_keys
from partners.progress import CommandProgress, progress_bar


def _to_rewrap(report: RotationReport) -> int:
    """Subject keys wrapped under another key than the active one when the run began."""
    return sum(n for key_id, n in report.before.items() if key_id != report.active_key_id)


class Command(BaseCommand):
    help = (
        "Re-wrap every subject's data key under the active (first) master key of "
        "VAULT_MASTER_KEYS, in small batches, while the platform keeps running. Idempotent. "
        "Afterwards the older keys can be removed from VAULT_MASTER_KEYS."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--batch-size", type=int, default=BATCH_SIZE)

    def handle(self, *args: Any, **options: Any) -> None:
        def progress(report: RotationReport, bar: CommandProgress) -> None:
            # Per batch: the count of subject keys re-wrapped so far, out of those to do.
            total = max(_to_rewrap(report), report.rewrapped)
            bar.update(completed=report.rewrapped, total=total)
            if options["verbosity"] >= 2:
                bar.echo(self.stdout, f"  batch {report.batches}: {report.rewrapped} re-wrapped")

        try:
            with progress_bar(
                self, description="Subject keys", verbosity=options["verbosity"]
            ) as bar:
                report = rotate_subject_keys(
                    batch_size=options["batch_size"], progress=lambda r: progress(r, bar)
                )
        except (RotationRefused, VaultKeyError) as exc:
            raise CommandError(f"key rotation refused: {exc}") from None
        before = ", ".join(f"{k!r}: {n}" for k, n in sorted(report.before.items())) or "none"
        if report.nothing_to_do:
            self.stdout.write(
                f"nothing to do: every subject's key is already wrapped under the active "
                f"master key {report.active_key_id!r} (subjects per key: {before})"
            )
            return
        self.stdout.write(
            f"re-wrapped {report.rewrapped} subject key(s) under {report.active_key_id!r} in "
            f"{report.batches} batch(es); before: {before}. Keys other than "
            f"{report.active_key_id!r} can now be removed from VAULT_MASTER_KEYS."
        )
