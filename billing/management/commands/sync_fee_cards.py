from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from billing.fee_cards import sync_all


class Command(BaseCommand):
    help = (
        "Write every product's fee card (what routing ranks by) from the fee schedule in "
        "force now; safe to run any time (beat runs it hourly)."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        written = sync_all()
        self.stdout.write(f"fee cards written: {written}")
