"""``manage.py simulate_partners --config lenders.json``: serve simulated partner lenders.

Config file::

    {
      "api_base_url": "http://127.0.0.1:8000",
      "seed": 0,
      "lenders": [
        {"slug": "acme", "secret": "whsec_...", "api_key": "pk_...", "accept_rate": 0.6}
      ]
    }

Lender fields are those of :class:`demo.lenders.SimulatedLender`.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from demo.cli import add_postback_options, serve
from demo.config import SimulatorConfigError, load_config


class Command(BaseCommand):
    help = "Serve simulated partner lenders (ping/post/webhooks) until Ctrl-C."
    requires_system_checks: list[str] = []  # standalone: needs no database or apps
    requires_migrations_checks = False

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--config", required=True, help="Path to the JSON config file.")
        parser.add_argument("--host", default="127.0.0.1", help="Bind address.")
        parser.add_argument("--port", type=int, default=8900, help="Port (0: any free port).")
        parser.add_argument(
            "--duration",
            type=float,
            default=None,
            help="Stop after this many seconds (default: run until Ctrl-C).",
        )
        add_postback_options(parser)

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            config = load_config(options["config"])
        except SimulatorConfigError as exc:
            raise CommandError(str(exc)) from None
        port = options["port"]
        if not 0 <= port <= 65535:
            raise CommandError(f"--port must be between 0 and 65535, got {port}")
        try:
            serve(
                config,
                host=options["host"],
                port=port,
                duration=options["duration"],
                out=self.stdout,
                log_path=options["log"],
                postback_retries=options["postback_retries"],
                postback_max_backoff=options["postback_max_backoff"],
            )
        except OSError as exc:
            raise CommandError(f"cannot listen on {options['host']}:{port}: {exc}") from None
