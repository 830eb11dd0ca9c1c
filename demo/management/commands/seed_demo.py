from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from demo.world import seed_demo


class Command(BaseCommand):
    help = (
        "Create the demo world (operator, eleven partner lenders, fees, exchange rates, "
        "consent text) once."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--simulator-url", default="http://127.0.0.1:8900")
        parser.add_argument("--api-base-url", default="http://127.0.0.1:8000")

    def handle(self, *args: Any, **options: Any) -> None:
        setup = seed_demo(
            simulator_url=options["simulator_url"], api_base_url=options["api_base_url"]
        )
        self.stdout.write("Demo data is in place (source key in var/demo.json).")
        if setup.admin_password:
            self.stdout.write(
                self.style.WARNING(f"Admin login (shown once): admin / {setup.admin_password}")
            )
