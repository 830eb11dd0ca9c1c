"""The catalogue's triggers: every change to a product, a partner or a routing hold moves
``CatalogueVersion`` and records the partner and product it touched in ``CatalogueChange``,
whoever writes (the admin, the API, holds, a bare ``update()``). Installed by migrations
0007 and 0009.

PostgreSQL runs them at commit (deferred constraint triggers, 0007), so a process sees a
change only once it is committed. SQLite runs them at once, and drops a table's triggers
whenever a migration rebuilds the table (adding a column with a default does): after every
``migrate`` they are installed again (``reinstall_after_migrate``), so a later migration of
these tables cannot silently stop the product index from seeing changes.
"""

from __future__ import annotations

from typing import Any

from django.db import DEFAULT_DB_ALIAS, connections
from django.db.backends.base.base import BaseDatabaseWrapper

WATCHED = ("partners_product", "partners_partner", "partners_routinghold")
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


def sqlite_statements() -> list[str]:
    """Drop and create the SQLite triggers (idempotent)."""
    statements = []
    for table in WATCHED:
        for event in ("INSERT", "UPDATE", "DELETE"):
            name = f"{table}_catalogue_version_{event.lower()}"
            row = "OLD" if event == "DELETE" else "NEW"
            partner, product = (key.format(row=row) for key in KEYS[table])
            statements.append(f"DROP TRIGGER IF EXISTS {name}")
            statements.append(
                f"CREATE TRIGGER {name} AFTER {event} ON {table} BEGIN {BUMP['sqlite']}; "
                f"{RECORD}({partner}, {product}, strftime('%Y-%m-%d %H:%M:%f', 'now')); END"
            )
    return statements


def install(connection: BaseDatabaseWrapper) -> None:
    if connection.vendor == "postgresql":
        statements = [postgresql_function()]
    elif connection.vendor == "sqlite":
        statements = sqlite_statements()
    else:
        raise NotImplementedError(f"no catalogue triggers for {connection.vendor}")
    with connection.cursor() as cursor:
        for sql in statements:
            cursor.execute(sql)


def reinstall_after_migrate(using: str = DEFAULT_DB_ALIAS, **kwargs: Any) -> None:
    """post_migrate: SQLite's triggers back after any table rebuild (see the module)."""
    connection = connections[using]
    if connection.vendor != "sqlite":
        return
    tables = connection.introspection.table_names()
    if "partners_cataloguechange" in tables and all(t in tables for t in WATCHED):
        install(connection)
