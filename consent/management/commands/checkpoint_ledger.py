from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from consent.ledger import make_checkpoint


class Command(BaseCommand):
    help = "Sign a checkpoint (tree size, root hash, time) of the consent ledger now."

    def handle(self, *args: Any, **options: Any) -> None:
        checkpoint = make_checkpoint()
        self.stdout.write(
            f"checkpoint: size {checkpoint.tree_size}, root {checkpoint.root_hash}, "
            f"signed {checkpoint.signed_at.isoformat()}"
        )
