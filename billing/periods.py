"""Billing months: the one place month arithmetic lives.

Every month in billing is a UTC calendar month, named by its first day (``date``): charges
carry the month they are billed in (``Charge.period``), invoices the months they cover
(``first_period`` .. ``period_start``), and tier units are numbered within the month of
their event. An invoice bills the partner's ledger entries of its currency whose billing
month falls in its span (:func:`entries_billed_by`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime

from django.db.models import QuerySet

from billing.models import Charge, Invoice


class InvoicingError(ValueError):
    """A billing month or invoice operation that cannot be done (commands exit non-zero)."""


class PeriodError(InvoicingError):
    """Not a billing month."""


def month_of(at: datetime) -> date:
    """The first day of the UTC month ``at`` falls in."""
    return at.astimezone(UTC).date().replace(day=1)


def next_month(month: date) -> date:
    return date(month.year + month.month // 12, month.month % 12 + 1, 1)


def previous_month(month: date) -> date:
    first = month.replace(day=1)
    return date(first.year - 1, 12, 1) if first.month == 1 else date(first.year, first.month - 1, 1)


def month_start(month: date) -> datetime:
    """Midnight UTC on the first day of ``month``."""
    return datetime(month.year, month.month, 1, tzinfo=UTC)


def month_bounds(at: datetime) -> tuple[datetime, datetime]:
    """[start, end) of the UTC month ``at`` falls in."""
    month = month_of(at)
    return month_start(month), month_start(next_month(month))


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
