from __future__ import annotations

import shlex
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from consent.audit_export import ExportError, export_bundle
from partners.progress import progress_bar


def _when(raw: str, name: str) -> datetime:
    try:
        value = datetime.fromisoformat(raw)
    except ValueError:
        raise CommandError(
            f"{name} must be an ISO 8601 date or time, e.g. 2026-01-31 or 2026-01-31T12:00:00Z"
        ) from None
    if timezone.is_naive(value):
        value = timezone.make_aware(value, timezone.get_current_timezone())
    return value


class Command(BaseCommand):
    help = (
        "Write an offline-verifiable audit bundle of the consent ledger: the entries about a "
        "subject (or recorded in a time range), the latest signed checkpoint, an inclusion "
        "proof per entry, the public key and a standalone verifier (verify_bundle.py)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--subject", default="", help="the subject's id (UUID)")
        parser.add_argument("--since", default="", help="ISO time, inclusive")
        parser.add_argument("--until", default="", help="ISO time, exclusive")
        parser.add_argument("--out", default="", help="directory to write (new or empty)")

    def handle(self, *args: Any, **options: Any) -> None:
        if not options["out"]:
            raise CommandError("--out DIR is required")
        subject = options["subject"]
        since, until = options["since"], options["until"]
        if bool(subject) == bool(since or until):
            raise CommandError("give either --subject UUID or --since ISO --until ISO")
        if not subject and not (since and until):
            raise CommandError("a time range needs both --since and --until")
        subject_id = None
        if subject:
            try:
                subject_id = uuid.UUID(subject)
            except ValueError:
                raise CommandError("--subject must be a subject id (UUID)") from None
        try:
            with progress_bar(
                self, description="Inclusion proofs", verbosity=options["verbosity"]
            ) as bar:
                summary = export_bundle(
                    out_dir=Path(options["out"]),
                    subject_id=subject_id,
                    since=_when(since, "--since") if since else None,
                    until=_when(until, "--until") if until else None,
                    progress=lambda done, total: bar.update(completed=done, total=total),
                )
        except ExportError as exc:
            raise CommandError(str(exc)) from None
        out = options["out"]
        verifier = shlex.quote(str(Path(out) / "verify_bundle.py"))
        self.stdout.write(
            f"wrote {summary.entries} entries with inclusion proofs against the checkpoint of "
            f"tree size {summary.tree_size} to {out}; verify with:\n"
            f"  python {verifier} {shlex.quote(out)} --public-key {summary.public_key}\n"
            f"The auditor compares this key's fingerprint, key_id {summary.key_id} (SHA-256 of "
            "the raw key), with the operator's key obtained out of band (not from this bundle "
            "or this message) before trusting the result."
        )
        if summary.not_yet_checkpointed:
            self.stderr.write(
                f"note: {summary.not_yet_checkpointed} matching entries are newer than the "
                "latest checkpoint and are not in the bundle; run checkpoint_ledger and export "
                "again to include them"
            )
