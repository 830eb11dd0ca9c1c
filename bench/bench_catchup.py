"""Catch-up charging against one ``INSERT ... SELECT`` of the same charge rows, same
database, same run: ``catchup_charging_vs_insert_select`` = catch-up time / bare
INSERT ... SELECT time (goal <= 3).

The backlog is what the catch-up charger exists for: events stored while billing could
not price them (here: every event of the month, stored with no charge). 20 partners with a
partner-wide CNY schedule (CPL 40, CPA 250, CPF 3% with a 50 minimum); every fourth has
marginal tiers (from the 500th unit of the month: CPL 30, CPA 200, CPF 2.5%), every fifth
reports its fundings in USD (converted at an entered USD->CNY rate). Each lead has an
``accepted`` event; every third is also approved, every sixth also funded, so
BENCH_CATCHUP_EVENTS events (default 60,000) make as many charges.

The baseline inserts one charge row per event (its kind, the schedule's amount, its
period) in one statement joining events, leads and schedules, then rolls back: the same
rows through the same indexes, constraints and triggers, with no pricing rules. Its
deferred foreign keys are checked before the rollback (``SET CONSTRAINTS ALL IMMEDIATE``,
timed): a committed catch-up pays those checks at COMMIT, and a rolled-back statement
would otherwise never pay them. The
catch-up run is ``billing.charging.charge_unbilled_events`` as beat runs it, committed;
every event must have its charge afterwards.
"""

from __future__ import annotations

import os
import random
import time
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from django.db import connection, transaction

from partners.months import month_of, month_start, previous_month

PARTNERS = 20
EVENTS = int(os.environ.get("BENCH_CATCHUP_EVENTS", "60000"))
ROUNDS = 2
SLUG = "bench-catchup-"
RATE_FROM = datetime(2020, 1, 1, tzinfo=UTC)


def _partners() -> list[tuple[uuid.UUID, uuid.UUID]]:
    """(partner id, product id) of the bench partners, with their schedules and the rate."""
    from billing.fees import create_fee_schedule
    from billing.fx import record_rate
    from billing.models import ExchangeRate, FeeSchedule
    from billing.pricing import FeeTerms, Tier
    from partners.models import Product
    from tests.factories import PartnerFactory, ProductFactory

    if not ExchangeRate.objects.filter(
        from_currency="USD", to_currency="CNY", effective_from=RATE_FROM
    ).exists():
        record_rate(
            from_currency="USD",
            to_currency="CNY",
            rate="7.1000",
            effective_from=RATE_FROM,
            source="bench",
        )
    pairs = []
    for n in range(PARTNERS):
        product = Product.objects.filter(partner__slug=f"{SLUG}{n:02d}").first()
        if product is None:
            partner = PartnerFactory(name=f"Bench catch-up {n}", slug=f"{SLUG}{n:02d}")
            product = ProductFactory(partner=partner)
        if not FeeSchedule.objects.filter(partner_id=product.partner_id).exists():
            tiers = (
                (Tier(500, Decimal("30.00"), Decimal("200.00"), Decimal("0.0250")),)
                if n % 4 == 0
                else ()
            )
            create_fee_schedule(
                partner=product.partner,
                effective_from=RATE_FROM,
                currency="CNY",
                terms=FeeTerms(
                    cpl=Decimal("40.00"),
                    cpa=Decimal("250.00"),
                    cpf_rate=Decimal("0.0300"),
                    cpf_min=Decimal("50.00"),
                    tiers=tiers,
                ),
            )
        pairs.append((product.partner_id, product.id))
    return pairs


def _clear(partner_ids: list[uuid.UUID]) -> None:
    """Remove the previous run's ledger, events, leads and referrals of the bench partners
    (the bench database is the benchmark's own: the ledger's append-only trigger is
    bypassed with TRUNCATE, as bench_invoicing does)."""
    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE billing_invoiceline, billing_invoice, billing_charge CASCADE")
        cursor.execute("DELETE FROM billing_pendingfee")
        cursor.execute("DELETE FROM billing_returnreview")
        cursor.execute(
            "DELETE FROM marketplace_leadevent WHERE partner_id = ANY(%s)", [partner_ids]
        )
        cursor.execute(
            "DELETE FROM marketplace_deliveryattempt WHERE lead_id IN "
            "(SELECT id FROM marketplace_lead WHERE partner_id = ANY(%s))",
            [partner_ids],
        )
        cursor.execute(
            "SELECT referral_id FROM marketplace_lead WHERE partner_id = ANY(%s)", [partner_ids]
        )
        referral_ids = [row[0] for row in cursor.fetchall()]
        cursor.execute("DELETE FROM marketplace_lead WHERE partner_id = ANY(%s)", [partner_ids])
        cursor.execute("DELETE FROM marketplace_referral WHERE id = ANY(%s)", [referral_ids])


def _clone_sql(table: str, overrides: dict[str, str], rows: str) -> str:
    """INSERT ... SELECT copying the template row (``%s``: its id) once per row of
    ``rows`` (unnested arrays named ``g``), with ``overrides`` (column -> expression)."""
    with connection.cursor() as cursor:
        columns = [c.name for c in connection.introspection.get_table_description(cursor, table)]
    values = ", ".join(overrides.get(c, f"t.{c}") for c in columns)
    return (
        f"INSERT INTO {table} ({', '.join(columns)}) "  # noqa: S608
        f"SELECT {values} FROM {table} t, {rows} WHERE t.id = %s"
    )


def _load(pairs: list[tuple[uuid.UUID, uuid.UUID]]) -> int:
    """Store the backlog: leads and their events, no charges. Returns the event count."""
    rng = random.Random(7)
    template = _template()
    n_leads = EVENTS * 6 // 9  # 1 + 1/3 + 1/6 events per lead
    lead_ids = [uuid.uuid4() for _ in range(n_leads)]
    referral_ids = [uuid.uuid4() for _ in range(n_leads)]
    owners = [pairs[i % PARTNERS] for i in range(n_leads)]
    start = month_start(previous_month(month_of(datetime.now(UTC))))
    referral_sql = _clone_sql(
        "marketplace_referral",
        {"id": "g.id", "source_reference": "'bench-cu-' || g.id::text"},
        "unnest(%s::uuid[]) AS g(id)",
    )
    lead_sql = _clone_sql(
        "marketplace_lead",
        {
            "id": "g.id",
            "referral_id": "g.ref",
            "partner_id": "g.partner",
            "product_id": "g.product",
        },
        "unnest(%s::uuid[], %s::uuid[], %s::uuid[], %s::uuid[]) AS g(id, ref, partner, product)",
    )
    events: list[tuple[Any, ...]] = []
    for i, lead_id in enumerate(lead_ids):
        partner, _ = owners[i]
        usd = pairs.index(owners[i]) % 5 == 0
        at = start + timedelta(seconds=rng.randint(0, 27 * 86400))
        events.append((lead_id, partner, f"cu-{i}-a", "accepted", at, None, None, ""))
        if i % 3 == 0:
            amount = Decimal(rng.randint(20000, 50000))
            cur = "USD" if usd else "CNY"
            events.append(
                (
                    lead_id,
                    partner,
                    f"cu-{i}-p",
                    "approved",
                    at + timedelta(hours=1),
                    amount,
                    None,
                    cur,
                )
            )
        if i % 6 == 0:
            principal = Decimal(rng.randint(1000, 19999))
            cur = "USD" if usd else "CNY"
            events.append(
                (
                    lead_id,
                    partner,
                    f"cu-{i}-f",
                    "funded",
                    at + timedelta(hours=2),
                    None,
                    principal,
                    cur,
                )
            )
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(referral_sql, [referral_ids, template.referral_id])
        cursor.execute(
            lead_sql,
            [
                lead_ids,
                referral_ids,
                [o[0] for o in owners],
                [o[1] for o in owners],
                template.pk,
            ],
        )
        columns = list(zip(*events, strict=True))
        cursor.execute(
            "INSERT INTO marketplace_leadevent (id, lead_id, partner_id, external_id, type, "
            "occurred_at, received_at, amount, principal, currency, reason, revenue_period) "
            "SELECT gen_random_uuid(), g.lead, g.partner, g.ext, g.type, g.at, now(), g.amount, "
            "g.principal, g.cur, '', '' FROM unnest(%s::uuid[], %s::uuid[], %s::text[], "
            "%s::text[], %s::timestamptz[], %s::numeric[], %s::numeric[], %s::text[]) "
            "AS g(lead, partner, ext, type, at, amount, principal, cur)",
            [list(c) for c in columns],
        )
        # The template lead has no events; it is a bench lead like the others.
        cursor.execute("ANALYZE marketplace_leadevent")
        cursor.execute("ANALYZE marketplace_lead")
    return len(events)


def _template() -> Any:
    """The lead (of a partner outside the benchmark, kept between runs) whose referral and
    lead rows the backlog's leads copy."""
    from marketplace.models import Lead
    from tests.billing.builders import LeadBuilder
    from tests.factories import PartnerFactory, ProductFactory

    lead = Lead.objects.filter(partner__slug=f"{SLUG}template").first()
    if lead is None:
        partner = PartnerFactory(name="Bench catch-up template", slug=f"{SLUG}template")
        lead = LeadBuilder().lead(product=ProductFactory(partner=partner))
    return lead


BARE_SQL = """
INSERT INTO billing_charge (id, partner_id, lead_id, product_id, event_id, schedule_id, kind,
    chain, seq, prev_seq, entry_type, amount, currency, unit_number, source_amount,
    source_currency, fx_rate, exchange_rate_id, occurred_at, corrects_id, reason, period,
    credit_note_id, created_at)
SELECT gen_random_uuid(), e.partner_id, e.lead_id, l.product_id, e.id, s.id,
    CASE e.type WHEN 'accepted' THEN 'cpl' WHEN 'approved' THEN 'cpa' ELSE 'cpf' END,
    '', 1, NULL, 'charge',
    CASE e.type WHEN 'accepted' THEN s.cpl WHEN 'approved' THEN s.cpa
        ELSE round(e.principal * s.cpf_rate, 2) END,
    s.currency, NULL, NULL, '', NULL, NULL, e.occurred_at, NULL, '',
    date_trunc('month', e.occurred_at AT TIME ZONE 'UTC')::date, NULL, now()
FROM marketplace_leadevent e
JOIN marketplace_lead l ON l.id = e.lead_id
JOIN billing_feeschedule s ON s.partner_id = e.partner_id AND s.product_id IS NULL
WHERE e.partner_id = ANY(%s) AND e.type IN ('accepted', 'approved', 'funded')
"""


def _bare(partner_ids: list[uuid.UUID], events: int) -> float:
    best = float("inf")
    for _ in range(ROUNDS):
        with transaction.atomic(), connection.cursor() as cursor:
            started = time.perf_counter()
            cursor.execute(BARE_SQL, [partner_ids])
            assert cursor.rowcount == events, (cursor.rowcount, events)
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
            elapsed = time.perf_counter() - started
            transaction.set_rollback(True)
        best = min(best, elapsed)
    return best


def run() -> dict[str, dict[str, Any]]:
    from billing.charging import charge_unbilled_events
    from billing.models import Charge

    connection.ensure_connection()
    pairs = _partners()
    partner_ids = [p for p, _ in pairs]
    _clear(partner_ids)
    started = time.perf_counter()
    events = _load(pairs)
    print(
        f"  stored {events:,} unbilled events in {time.perf_counter() - started:.1f}s", flush=True
    )
    bare = _bare(partner_ids, events)
    started = time.perf_counter()
    made = charge_unbilled_events()
    catchup = time.perf_counter() - started
    charged = Charge.objects.filter(partner_id__in=partner_ids).count()
    assert made == charged == events, (made, charged, events)
    print(
        f"  {events:,} events: INSERT ... SELECT {bare:.3f}s, catch-up {catchup:.3f}s "
        f"({events / catchup:,.0f} charges/s, ratio {catchup / bare:.2f})",
        flush=True,
    )
    _clear(partner_ids)
    return {
        "catchup_charging_vs_insert_select": {
            "value": round(catchup / bare, 2),
            "goal": "<= 3",
            "baseline": f"one INSERT ... SELECT of {events:,} charge rows: {bare:.3f}s; "
            f"catch-up charging: {catchup:.3f}s ({events / catchup:,.0f} charges/s)",
        }
    }
