"""The catalogue's triggers: every change to a product, a partner or a routing hold moves
``CatalogueVersion`` and records the partner and product it touched in ``CatalogueChange``,
whoever writes (the admin, the API, holds, a bare ``update()``). Installed by migrations
0007 and 0009. Changes to routing's other reference data (licences, suppression keys,
regulatory rule sets, strategies and experiments: ``VERSION_ONLY``) move the version too
(partners 0012, marketplace 0017), so routing may cache them per version.

PostgreSQL runs them at commit (deferred constraint triggers, 0007), so a process sees a
change only once it is committed. SQLite runs them at once, and drops a table's triggers
whenever a migration rebuilds the table (adding a column with a default does): after every
``migrate`` they are installed again (``reinstall_after_migrate``), so a later migration of
these tables cannot silently stop the product index from seeing changes.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.db import DEFAULT_DB_ALIAS, connections
from django.db.backends.base.base import BaseDatabaseWrapper

WATCHED = ("partners_product", "partners_partner", "partners_routinghold")
# Routing's other reference data: a change moves the version only (no box changes), so
# what routing caches per version (``partners.catalogue_cache``) is read again.
VERSION_ONLY = (
    "partners_partnerlicence",
    "partners_suppressionkey",
    "marketplace_ruleset",
    "marketplace_strategy",
    "marketplace_strategyversion",
    "marketplace_experiment",
    "marketplace_arm",
)
# Per table: the changed row's (partner id, product id) as SQL over the row variable.
KEYS = {
    "partners_product": ("{row}.partner_id", "{row}.id"),
    "partners_partner": ("{row}.id", "NULL"),
    "partners_routinghold": ("{row}.partner_id", "{row}.product_id"),
}
# A random new value, not version + 1: a rolled-back change (a test's transaction) must
# not leave a later, different catalogue with a version some process already cached.
BUMP = {
    "postgresql": "UPDATE partners_catalogueversion "
    "SET version = floor(random() * 9007199254740991)::bigint WHERE id = 1",
    "sqlite": "UPDATE partners_catalogueversion SET version = random() WHERE id = 1",
}
RECORD = "INSERT INTO partners_cataloguechange (partner_id, product_id, changed_at) VALUES "


def postgresql_function() -> str:
    """The trigger function the deferred triggers of migration 0007 call."""
    branches = []
    for number, table in enumerate(WATCHED):
        partner, product = (key.format(row="r") for key in KEYS[table])
        keyword = "IF" if number == 0 else "ELSIF"
        # clock_timestamp(): the trigger runs at commit, so this is (about) the moment the
        # change becomes visible; now() is its transaction's start, maybe long before.
        branches.append(
            f"{keyword} TG_TABLE_NAME = '{table}' THEN "
            f"{RECORD}({partner}, {product}, clock_timestamp());"
        )
    body = (
        "DECLARE r record; BEGIN "
        "IF TG_OP = 'DELETE' THEN r := OLD; ELSE r := NEW; END IF; "
        f"{BUMP['postgresql']}; " + " ".join(branches) + " END IF; RETURN NULL; END"
    )
    return (
        "CREATE OR REPLACE FUNCTION partners_bump_catalogue_version() RETURNS trigger "
        f"LANGUAGE plpgsql AS $$ {body} $$"
    )


def sqlite_statements(tables: Iterable[str] = WATCHED) -> list[str]:
    """Drop and create the SQLite triggers of these tables (idempotent)."""
    statements = []
    for table in tables:
        for event in ("INSERT", "UPDATE", "DELETE"):
            name = f"{table}_catalogue_version_{event.lower()}"
            row = "OLD" if event == "DELETE" else "NEW"
            record = ""
            if table in KEYS:
                partner, product = (key.format(row=row) for key in KEYS[table])
                now = "strftime('%Y-%m-%d %H:%M:%f', 'now')"
                record = f"{RECORD}({partner}, {product}, {now}); "
            statements.append(f"DROP TRIGGER IF EXISTS {name}")
            statements.append(
                f"CREATE TRIGGER {name} AFTER {event} ON {table} "
                f"BEGIN {BUMP['sqlite']}; {record}END"
            )
    return statements


def postgresql_trigger_name(table: str) -> str:
    return f"{table}_catalogue_version"


def postgresql_triggers(tables: Iterable[str]) -> list[str]:
    """Deferred constraint triggers (run at commit, so the version row is the last lock a
    transaction takes) calling the function above, on these tables (idempotent)."""
    statements = []
    for table in tables:
        name = postgresql_trigger_name(table)
        statements.append(f"DROP TRIGGER IF EXISTS {name} ON {table}")
        statements.append(
            f"CREATE CONSTRAINT TRIGGER {name} AFTER INSERT OR UPDATE OR DELETE ON {table} "
            "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW "
            "EXECUTE FUNCTION partners_bump_catalogue_version()"
        )
    return statements


def trigger_names() -> list[str]:
    """Every PostgreSQL catalogue trigger (tests make them immediate in their transaction)."""
    return [postgresql_trigger_name(table) for table in (*WATCHED, *VERSION_ONLY)]


def install(connection: BaseDatabaseWrapper, tables: Iterable[str] = ()) -> None:
    """The trigger function (PostgreSQL) or the watched tables' triggers (SQLite), plus
    triggers on ``tables`` of ``VERSION_ONLY``."""
    if connection.vendor == "postgresql":
        statements = [postgresql_function(), *postgresql_triggers(tables)]
    elif connection.vendor == "sqlite":
        statements = sqlite_statements((*WATCHED, *tables))
    else:
        raise NotImplementedError(f"no catalogue triggers for {connection.vendor}")
    with connection.cursor() as cursor:
        for sql in statements:
            cursor.execute(sql)


def uninstall(connection: BaseDatabaseWrapper, tables: Iterable[str]) -> None:
    """Remove the triggers of these ``VERSION_ONLY`` tables (a migration's way back)."""
    with connection.cursor() as cursor:
        for table in tables:
            if connection.vendor == "postgresql":
                name = postgresql_trigger_name(table)
                cursor.execute(f"DROP TRIGGER IF EXISTS {name} ON {table}")
                continue
            for event in ("insert", "update", "delete"):
                cursor.execute(f"DROP TRIGGER IF EXISTS {table}_catalogue_version_{event}")


def reinstall_after_migrate(using: str = DEFAULT_DB_ALIAS, **kwargs: Any) -> None:
    """post_migrate: SQLite's triggers back after any table rebuild (see the module)."""
    connection = connections[using]
    if connection.vendor != "sqlite":
        return
    tables = connection.introspection.table_names()
    if "partners_cataloguechange" in tables and all(t in tables for t in WATCHED):
        install(connection, [table for table in VERSION_ONLY if table in tables])
