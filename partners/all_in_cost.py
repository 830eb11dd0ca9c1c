"""A product's worst-case all-in annual cost to the borrower: the nominal APR plus every fee
the partner charges, as one annual rate. Pure, Decimal only.

The 2025 rules on lending through internet platforms read the borrower's *all-in* cost (every
fee, guarantees included) against a 24% annual cap, so the nominal APR alone is not enough.

Formula (the constant-ratio method, a published closed-form estimate of the annual rate of a
loan repaid in equal monthly instalments; it slightly overstates the exact IRR, which is the
safe side for a cap). For a term of ``n`` months, a principal ``P``, an upfront (service)
fee ``f * P`` and a monthly fee ``m * P``, the fees' finance charge is ``C = P * (f + m * n)``
and its annual rate ``24 * C / (P * (n + 1))``; the interest itself is already an annual
rate on the outstanding balance (the APR). So::

    all_in(n) = apr_max + 24 * (f + m * n) / (n + 1)

``apr_max`` (not ``apr_min``): the partner may price the applicant anywhere in its range, so
the worst case is the top of it. Over the product's terms, ``d/dn`` of the fee part has the
sign of ``m - f``: it is monotone in ``n``, so the worst case is at one end of the term range
and ``worst_all_in_cost = max(all_in(min_term), all_in(max_term))``. With no fees it is
``apr_max``. Rounded *up* (``ROUND_CEILING``) to four decimal places (0.01 percentage
points), so a cost a hair over a cap never rounds down under it.
"""

from __future__ import annotations

from decimal import ROUND_CEILING, Decimal

RATE_PLACES = Decimal("0.0001")


def all_in_cost(
    *, apr_max: Decimal, upfront_fee_rate: Decimal, monthly_fee_rate: Decimal, term_months: int
) -> Decimal:
    """The annual all-in cost of a ``term_months`` loan, unrounded (see the module text)."""
    if term_months < 1:
        raise ValueError("a loan term is at least one month")
    n = Decimal(term_months)
    fees = Decimal(24) * (upfront_fee_rate + monthly_fee_rate * n) / (n + 1)
    return apr_max + fees


def worst_all_in_cost(
    *,
    apr_max: Decimal,
    upfront_fee_rate: Decimal,
    monthly_fee_rate: Decimal,
    min_term: int,
    max_term: int,
) -> Decimal:
    """The highest all-in annual cost over the product's terms, rounded up to 0.0001."""
    worst = max(
        all_in_cost(
            apr_max=apr_max,
            upfront_fee_rate=upfront_fee_rate,
            monthly_fee_rate=monthly_fee_rate,
            term_months=term,
        )
        # A zero term (the column allows it) is read as one month: the dearer reading.
        for term in {max(min_term, 1), max(max_term, 1)}
    )
    return worst.quantize(RATE_PLACES, rounding=ROUND_CEILING)
