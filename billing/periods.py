"""Billing months (the month arithmetic itself lives in :mod:`partners.months`).

Every month in billing is a UTC calendar month, named by its first day (``date``): charges
carry the month they are billed in (``Charge.period``), invoices the months they cover
(``first_period`` .. ``period_start``), and tier units are numbered within the month of
their event. An invoice bills the partner's ledger entries of its currency whose billing
month falls in its span (:func:`entries_billed_by`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

from django.db.models import QuerySet

from billing.models import Charge, Invoice
from partners.months import month_bounds, month_of, month_start, next_month, previous_month

__all__ = [
    "InvoicingError",
    "Period",
    "PeriodError",
    "entries_billed_by",
    "month_bounds",
    "month_of",
    "month_start",
    "next_month",
    "previous_month",
]


class InvoicingError(ValueError):
    """A billing month or invoice operation that cannot be done (commands exit non-zero)."""


class PeriodError(InvoicingError):
    """Not a billing month."""


@dataclass(frozen=True)
class Period:
    """One billing month, as the commands and invoices name it (YYYY-MM)."""

    start: date

    @classmethod
    def parse(cls, text: str) -> Period:
        try:
            parsed = datetime.strptime(text, "%Y-%m").date()
        except ValueError:
            raise PeriodError(f"period must look like YYYY-MM, got {text!r}") from None
        return cls(parsed)

    @classmethod
    def before(cls, today: date) -> Period:
        """The month before the one ``today`` is in."""
        return cls(previous_month(today))

    @property
    def end(self) -> date:
        return next_month(self.start)

    @property
    def start_datetime(self) -> datetime:
        return month_start(self.start)

    @property
    def end_datetime(self) -> datetime:
        return month_start(self.end)

    def __str__(self) -> str:
        return f"{self.start:%Y-%m}"


def entries_billed_by(invoice: Invoice) -> QuerySet[Charge]:
    """The ledger entries an invoice bills (corrections billed by credit notes excluded)."""
    return Charge.objects.filter(
        partner_id=invoice.partner_id,
        currency=invoice.currency,
        period__gte=invoice.first_period,
        period__lte=invoice.period_start,
        credit_note__isnull=True,
    )
