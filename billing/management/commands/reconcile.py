from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from billing.invoicing import InvoicingError
from billing.periods import Period
from billing.reconcile import reconcile


class Command(BaseCommand):
    help = (
        "Prove a month's events, charges, invoice lines, invoice totals and credit notes "
        "agree to the cent; exits non-zero listing every difference."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--period", required=True, help="YYYY-MM")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            period = Period.parse(options["period"])
        except InvoicingError as exc:
            raise CommandError(str(exc)) from None
        if period.start > timezone.now().date():
            raise CommandError(f"period {period} is in the future")
        report = reconcile(period=period)
        self.stdout.write(f"Reconciliation of {period}")
        for line in report.facts:
            self.stdout.write(f"  {line}")
        for line in report.explained:
            self.stdout.write(f"  explained: {line}")
        for line in report.differences:
            self.stdout.write(f"  DIFFERENCE: {line}")
        if not report.ok:
            raise CommandError(f"{len(report.differences)} difference(s) in {period}")
        self.stdout.write(self.style.SUCCESS(f"{period} reconciles to the cent."))
