from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from billing.invoicing import InvoicingError, invoice_month
from billing.periods import Period
from partners.progress import progress_bar


class Command(BaseCommand):
    help = (
        "Make each partner's invoice for a month (rerunning is a no-op); with --issue, issue "
        "every draft of the month whose partner and months reconcile. Exits non-zero when "
        "any draft was refused, listing the differences."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--period", required=True, help="YYYY-MM")
        parser.add_argument(
            "--issue",
            action="store_true",
            help="issue the month's drafts (new ones and those made earlier)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            period = Period.parse(options["period"])
            with progress_bar(
                self, description="Partners drafted", verbosity=options["verbosity"]
            ) as bar:
                run = invoice_month(
                    period=period,
                    issue=options["issue"],
                    progress=lambda stage, done, total: bar.update(
                        completed=done, total=total, description=stage
                    ),
                )
        except InvoicingError as exc:
            raise CommandError(str(exc)) from None
        for invoice in run.made:
            self.stdout.write(
                f"made    {invoice}  {invoice.partner.name}  {invoice.currency} {invoice.total}"
            )
        for invoice in run.issued:
            self.stdout.write(
                f"issued  {invoice}  {invoice.partner.name}  {invoice.currency} {invoice.total}"
            )
        for refusal in run.refused:
            invoice = refusal.invoice
            self.stdout.write(
                f"REFUSED {invoice}  {invoice.partner.name}  {invoice.currency} {invoice.total}: "
                f"{len(refusal.differences)} reconciliation difference(s)"
            )
            for difference in refusal.differences:
                self.stdout.write(f"          - {difference}")
        summary = f"{len(run.made)} invoice(s) made for {period}"
        if options["issue"]:
            summary += f", {len(run.issued)} issued, {len(run.refused)} refused"
        self.stdout.write(f"{summary}.")
        if run.refused:
            raise CommandError(
                f"{len(run.refused)} invoice(s) of {period} not issued: fix the differences "
                "and run again, or issue with an override and a reason in the admin"
            )
