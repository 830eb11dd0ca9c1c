"""Invoicing 1,000,000 charges across 200 partners against a bare GROUP BY over the same
rows, same database, same run: ``invoicing_vs_bare_aggregate`` = invoicing time / bare
aggregate time (goal <= 4). Memory: tracemalloc peak of the invoicing run at 250k and at
1M charges; ``invoicing_memory_1m_vs_250k`` is their ratio (flat: about 1).

The ledger rows are loaded with COPY. Charges reference leads and events; building a
million real leads would measure the loader, not invoicing, so the COPY runs with
``session_replication_role = replica`` (foreign-key triggers off) and random lead and event
ids. Invoicing never joins leads or events, so this changes nothing it does.
"""

from __future__ import annotations

import io
import random
import time
import tracemalloc
import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from django.db import connection

from partners.months import month_of, month_start, previous_month

PARTNERS = 200
SIZES = [250_000, 1_000_000]
ROUNDS = 2
BARE_SQL = (
    "SELECT partner_id, currency, product_id, kind, entry_type, count(*), sum(amount) "
    "FROM billing_charge GROUP BY partner_id, currency, product_id, kind, entry_type"
)


def _world() -> list[tuple[uuid.UUID, uuid.UUID]]:
    from partners.models import Product
    from tests.factories import PartnerFactory, ProductFactory

    existing = Product.objects.filter(partner__slug__startswith="bench-billing-")
    pairs = list(existing.order_by("partner__slug").values_list("partner_id", "id"))
    for n in range(len(pairs), PARTNERS):
        partner = PartnerFactory(name=f"Bench billing {n}", slug=f"bench-billing-{n:03d}")
        product = ProductFactory(partner=partner)
        pairs.append((product.partner_id, product.id))
    return pairs[:PARTNERS]


def _month() -> date:
    return previous_month(month_of(datetime.now(UTC)))


def _load(rows: int, pairs: list[tuple[uuid.UUID, uuid.UUID]], month: date) -> None:
    rng = random.Random(rows)
    kinds = [("cpl", "40.00"), ("cpa", "250.00"), ("cpf", None)]
    start = month_start(month)
    now = datetime.now(UTC).isoformat()
    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE billing_invoiceline, billing_invoice, billing_charge CASCADE")
        cursor.execute("UPDATE billing_partnerbillingprofile SET invoiced_through = NULL")
        cursor.execute("SET session_replication_role = replica")
        columns = (
            "id, partner_id, lead_id, product_id, event_id, kind, entry_type, amount, "
            "currency, occurred_at, corrects_id, reason, period, chain, seq, prev_seq, "
            "source_currency"
        )
        with cursor.cursor.copy(f"COPY billing_charge ({columns}, created_at) FROM STDIN") as copy:
            buffer = io.StringIO()
            for n in range(rows):
                partner, product = pairs[n % PARTNERS]
                kind, fixed = kinds[n % 3]
                amount = fixed or f"{rng.randint(5000, 200000) / 100:.2f}"
                credit = n % 31 == 0  # about 3% returns
                at = (start + timedelta(seconds=rng.randint(0, 27 * 86400))).isoformat()
                buffer.write(
                    "\t".join(
                        [
                            str(uuid.uuid4()),
                            str(partner),
                            str(uuid.uuid4()),
                            str(product),
                            str(uuid.uuid4()),
                            kind,
                            "credit" if credit else "charge",
                            f"-{amount}" if credit else amount,
                            "CNY",
                            at,
                            str(uuid.uuid4()) if credit else "\\N",
                            "duplicate" if credit else "",
                            month.isoformat(),
                            "",
                            "2" if credit else "1",
                            "1" if credit else "\\N",
                            "",
                            now,
                        ]
                    )
                    + "\n"
                )
                if buffer.tell() > 4_000_000:
                    copy.write(buffer.getvalue())
                    buffer.seek(0)
                    buffer.truncate()
            copy.write(buffer.getvalue())
        cursor.execute("SET session_replication_role = DEFAULT")
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE billing_charge")


def _reset_invoices() -> None:
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM billing_invoiceline")
        cursor.execute("DELETE FROM billing_invoice")
        cursor.execute("UPDATE billing_partnerbillingprofile SET invoiced_through = NULL")


def _bare() -> float:
    best = float("inf")
    for _ in range(ROUNDS + 1):
        with connection.cursor() as cursor:
            started = time.perf_counter()
            cursor.execute(BARE_SQL)
            cursor.fetchall()
            best = min(best, time.perf_counter() - started)
    return best


def _invoice(month: date) -> tuple[float, int, int]:
    from billing.invoicing import Period, generate_invoices
    from billing.models import Invoice

    best, peak = float("inf"), 0
    for _ in range(ROUNDS):
        _reset_invoices()
        tracemalloc.start()
        started = time.perf_counter()
        made = generate_invoices(period=Period(month))
        elapsed = time.perf_counter() - started
        peak = max(peak, tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
        best = min(best, elapsed)
        assert len(made) == PARTNERS, len(made)
    count = Invoice.objects.count()
    return best, peak, count


def run() -> dict[str, dict[str, Any]]:
    from django.db.models import Sum

    from billing.models import Charge, Invoice

    connection.ensure_connection()
    pairs = _world()
    month = _month()
    figures: dict[int, dict[str, float]] = {}
    for rows in SIZES:
        started = time.perf_counter()
        _load(rows, pairs, month)
        print(f"  loaded {rows:,} charges in {time.perf_counter() - started:.1f}s", flush=True)
        bare = _bare()
        invoicing, peak, count = _invoice(month)
        billed = Invoice.objects.aggregate(s=Sum("subtotal"))["s"]
        ledger = Charge.objects.aggregate(s=Sum("amount"))["s"]
        assert billed == ledger, (billed, ledger)  # every cent of the ledger is invoiced
        figures[rows] = {"bare": bare, "invoicing": invoicing, "peak": peak}
        print(
            f"  {rows:,} charges: bare GROUP BY {bare:.3f}s, invoicing {invoicing:.3f}s "
            f"({count} invoices, ratio {invoicing / bare:.2f}), tracemalloc peak "
            f"{peak / 1e6:.1f} MB",
            flush=True,
        )
    big, small = figures[SIZES[-1]], figures[SIZES[0]]
    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE billing_invoiceline, billing_invoice, billing_charge CASCADE")
    return {
        "invoicing_vs_bare_aggregate": {
            "value": round(big["invoicing"] / big["bare"], 2),
            "goal": "<= 4",
            "baseline": f"bare GROUP BY over {SIZES[-1]:,} charges: {big['bare']:.3f}s; "
            f"invoicing {PARTNERS} partners: {big['invoicing']:.3f}s",
        },
        "invoicing_memory_1m_vs_250k": {
            "value": round(big["peak"] / small["peak"], 2),
            "goal": "~1 (flat)",
            "baseline": f"tracemalloc peak {small['peak'] / 1e6:.1f} MB at {SIZES[0]:,}, "
            f"{big['peak'] / 1e6:.1f} MB at {SIZES[-1]:,}",
        },
    }


__all__ = ["Decimal", "run"]
