from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from billing.invoicing import InvoicingError, Period, generate_invoices


class Command(BaseCommand):
    help = "Make each partner's invoice for a month (rerunning is a no-op)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--period", required=True, help="YYYY-MM")
        parser.add_argument("--issue", action="store_true", help="issue the drafts at once")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            period = Period.parse(options["period"])
            invoices = generate_invoices(period=period, issue=options["issue"])
        except InvoicingError as exc:
            raise CommandError(str(exc)) from None
        for invoice in invoices:
            self.stdout.write(
                f"{invoice}  {invoice.partner.name}  {invoice.currency} {invoice.total}"
            )
        self.stdout.write(f"{len(invoices)} invoice(s) made for {period}.")
