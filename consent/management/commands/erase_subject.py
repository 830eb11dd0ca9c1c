from __future__ import annotations

import uuid
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from consent import erasure, vault
from consent.models import Subject


class Command(BaseCommand):
    help = (
        "Erase one applicant by crypto-shredding (destroy the data key): nothing can be "
        "decrypted afterwards, open consents are withdrawn and partners asked to delete. "
        "Referrals, billing and the ledger remain. By ID number or phone it erases the "
        "person's live and sandbox subjects; by --subject only that one."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        which = parser.add_mutually_exclusive_group(required=True)
        which.add_argument("--subject", help="vault subject id (UUID)")
        which.add_argument("--national-id", help="ID number, matched through the blind index")
        which.add_argument("--phone", help="phone number, matched through the blind index")
        parser.add_argument("--reason", required=True, help="why (only its SHA-256 is kept)")

    def handle(self, *args: Any, **options: Any) -> None:
        reason = (options["reason"] or "").strip()
        if not reason:
            raise CommandError("--reason must not be empty")
        for subject_id in self._subject_ids(options):
            self._erase(subject_id, reason)

    def _erase(self, subject_id: uuid.UUID, reason: str) -> None:
        result = erasure.erase_subject(
            subject_id=subject_id, reason=reason, erased_by="manage.py erase_subject"
        )
        erased_at = result.subject.erased_at
        assert erased_at is not None
        mode = "sandbox" if result.subject.is_sandbox else "live"
        if not result.erased:
            self.stdout.write(
                f"{mode} subject {subject_id} was already erased at {erased_at.isoformat()}: "
                "nothing to do"
            )
            return
        self.stdout.write(
            f"erased {mode} subject {subject_id} at {erased_at.isoformat()}; "
            f"{len(result.withdrawals)} open consent(s) withdrawn"
        )

    def _subject_ids(self, options: dict[str, Any]) -> list[uuid.UUID]:
        """--subject: that one subject (one key mode). A number: the person it names, in
        both modes, because an erasure request is the person's and a sandbox record that
        carried their real numbers is their data too. A number matching several people
        (a shared phone) is refused: the operator picks with --subject."""
        # Messages never repeat the typed number: it is personal data.
        if options["subject"]:
            try:
                subject_id = uuid.UUID(options["subject"])
            except ValueError:
                raise CommandError("--subject is not a UUID") from None
            if not Subject.objects.filter(pk=subject_id).exists():
                raise CommandError(f"no subject {subject_id}")
            return [subject_id]
        if options["national_id"]:
            what = "ID number"
            ids = vault.find_subject_ids(national_id=options["national_id"], is_sandbox=None)
        else:
            what = "phone number"
            ids = vault.find_subject_ids(phone=options["phone"] or "", is_sandbox=None)
        if not ids:
            raise CommandError(f"no subject matches that {what} (or it was erased already)")
        # One person has at most one subject per mode, all under one ID number's index.
        people = set(Subject.objects.filter(pk__in=ids).values_list("national_id_index", flat=True))
        if len(people) > 1:
            listed = ", ".join(sorted(str(i) for i in ids))
            raise CommandError(
                f"{len(ids)} subjects match that {what}: {listed}; choose one with --subject <id>"
            )
        return ids
