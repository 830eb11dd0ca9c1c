"""The figures every invoice and credit note carries: subtotal, tax and total (the tax
rounded once), and a gapless number per year drawn from a sequence row locked for the rest
of the transaction.
"""

from __future__ import annotations

from decimal import Decimal

from billing.models import CreditNoteSequence, InvoiceSequence
from billing.money import to_cents


def _totals(subtotal: Decimal, rate: Decimal) -> tuple[Decimal, Decimal, Decimal]:
    subtotal = to_cents(subtotal)
    tax = to_cents(subtotal * rate)
    return subtotal, tax, subtotal + tax


def _next_number(
    sequence_model: type[InvoiceSequence] | type[CreditNoteSequence], year: int
) -> int:
    sequence_model.objects.get_or_create(year=year)
    # Locked until commit: a concurrent issuer waits, so numbers have no gaps or repeats.
    sequence = sequence_model.objects.select_for_update().get(pk=year)
    sequence.last_number += 1
    sequence.save(update_fields=["last_number"])
    return sequence.last_number
