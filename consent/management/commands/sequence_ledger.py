from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from consent.sequencer import pending_count, sequence_pending


class Command(BaseCommand):
    help = (
        "Sequence the consent ledger's pending entries now (beat does it every second): "
        "gapless seq numbers, canonical JSON and leaf hashes."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        done = sequence_pending()
        self.stdout.write(f"sequenced {done} entries; {pending_count()} pending")
