"""The admin dashboard over 1,000,000 leads, against a bare ``SELECT COUNT(*)`` of the lead
table in the same run on the same database. ``dashboard_vs_count`` = the dashboard page's
median time / the COUNT(*)'s median time (goal <= 3: it reads the daily aggregates, so it
costs about as much as one scan of a small table, whatever the number of leads).

The leads (and their referrals) are copies of one template lead, INSERTed by
generate_series over 30 days in time order, 5 products, 3 channels and 4 risk tiers
(kept between runs: loaded once per database); the rollup then fills the aggregates once
(its time is reported too, and that of beat's minute run over today and yesterday).
"""

from __future__ import annotations

import statistics
import time
from typing import Any, cast

from django.db import connection, transaction

from bench.bench_catchup import _clone_sql, _template

LEADS = 1_000_000
ROUNDS = 15
SLUG = "bench-dash"
REFERRAL_ID = "('00000000-0000-4000-8000-' || lpad(to_hex(g), 12, '0'))::uuid"
LEAD_ID = "('00000000-0000-4000-9000-' || lpad(to_hex(g), 12, '0'))::uuid"
# Spread evenly over the last 30 days in insertion order, as an append-only table grows
# (so the rollup's BRIN indexes work as they do on real traffic).
WHEN = f"now() - make_interval(secs => ({LEADS} - g) * 2592000.0 / {LEADS})"


def _products() -> list[Any]:
    from partners.models import Product
    from tests.factories import PartnerFactory, ProductFactory

    found = list(Product.objects.filter(partner__slug__startswith=SLUG).order_by("id"))
    while len(found) < 5:
        n = len(found)
        partner = PartnerFactory(name=f"Bench dashboard {n}", slug=f"{SLUG}-{n}")
        found.append(cast(Product, ProductFactory(partner=partner, daily_cap=20_000 + n)))
    return found


def _load() -> float:
    """The million leads (once per database); returns the seconds it took (0: loaded)."""
    from marketplace.models import Lead

    products = _products()
    if Lead.objects.filter(partner__slug__startswith=SLUG).count() >= LEADS:
        return 0.0
    template = _template()
    began = time.perf_counter()
    referral_sql = _clone_sql(
        "marketplace_referral",
        {
            "id": REFERRAL_ID,
            "source_reference": "'bench-dash-' || g::text",
            "channel": "(ARRAY['app', 'web', 'partner_api'])[1 + g %% 3]",
            "risk_tier": "(ARRAY['R3', 'R4', 'R5', 'R6'])[1 + g %% 4]",
            "status": "'distributed'",
            "created_at": WHEN,
        },
        "generate_series(1, %s) AS g",
    )
    lead_sql = _clone_sql(
        "marketplace_lead",
        {
            "id": LEAD_ID,
            "referral_id": REFERRAL_ID,
            "partner_id": "(%s::uuid[])[1 + g %% 5]",
            "product_id": "(%s::uuid[])[1 + g %% 5]",
            "status": "(ARRAY['delivered', 'accepted', 'approved', 'funded'])[1 + g %% 4]",
            "created_at": WHEN,
            "delivered_at": WHEN,
            "updated_at": WHEN,
        },
        "generate_series(1, %s) AS g",
    )
    partners = [str(p.partner_id) for p in products]
    ids = [str(p.id) for p in products]
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(referral_sql, [LEADS, template.referral_id])
        cursor.execute(lead_sql, [partners, ids, LEADS, template.id])
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE marketplace_referral")
        cursor.execute("ANALYZE marketplace_lead")
    return time.perf_counter() - began


def _median_ms(action: Any) -> float:
    action()  # warm: plans, caches, templates
    times = []
    for _ in range(ROUNDS):
        began = time.perf_counter()
        action()
        times.append((time.perf_counter() - began) * 1000)
    return statistics.median(times)


def run() -> dict[str, dict[str, Any]]:
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group
    from django.test import Client

    from billing.stats import rollup_revenue
    from marketplace.stats import rollup_funnel
    from partners.roles import OPS_GROUP

    load_s = _load()
    began = time.perf_counter()
    rollup_funnel(days=31)
    rollup_revenue(days=31)
    rollup_s = time.perf_counter() - began
    began = time.perf_counter()
    rollup_funnel()  # what beat runs every minute: today and yesterday
    rollup_revenue()
    recent_s = time.perf_counter() - began

    user, _ = get_user_model().objects.get_or_create(username="bench-dash-ops", is_staff=True)
    user.groups.add(Group.objects.get(name=OPS_GROUP))
    client = Client()
    client.force_login(user)

    def dashboard() -> None:
        response = client.get("/admin/dashboard/")
        assert response.status_code == 200, response.status_code

    def count() -> None:
        with connection.cursor() as cursor:
            cursor.execute("SELECT COUNT(*) FROM marketplace_lead")
            cursor.fetchone()

    with connection.cursor() as cursor:
        cursor.execute("SELECT COUNT(*) FROM marketplace_lead")
        leads = cursor.fetchone()[0]
    # Interleaved halves, so a noisy moment on the shared machine hits both.
    halves = [(_median_ms(dashboard), _median_ms(count)) for _ in range(2)]
    dash_ms = statistics.median(half[0] for half in halves)
    count_ms = statistics.median(half[1] for half in halves)
    ratio = round(dash_ms / count_ms, 3)
    print(
        f"dashboard {dash_ms:.1f} ms, COUNT(*) {count_ms:.1f} ms over {leads} leads "
        f"(ratio {ratio}); load {load_s:.0f} s, rollup of 31 days {rollup_s:.1f} s, "
        f"of 2 days (beat's minute run) {recent_s:.2f} s"
    )
    return {
        "dashboard_vs_count": {
            "value": ratio,
            "goal": "<= 3",
            "baseline": f"SELECT COUNT(*) over {leads} leads: {count_ms:.1f} ms",
            "dashboard_ms": round(dash_ms, 1),
            "count_ms": round(count_ms, 1),
            "rollup_31_days_s": round(rollup_s, 1),
            "rollup_2_days_s": round(recent_s, 2),
            "load_s": round(load_s, 1),
        }
    }
