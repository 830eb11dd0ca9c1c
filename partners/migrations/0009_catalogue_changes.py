"""The catalogue triggers also record which partner and product changed
(``partners.catalogue_triggers``), so a process's product index reloads those boxes only
instead of compiling the whole catalogue again."""

import importlib

from django.db import migrations, models
from django.db.backends.base.schema import BaseDatabaseSchemaEditor
from django.db.migrations.state import StateApps

from partners import catalogue_triggers

before = importlib.import_module("partners.migrations.0007_catalogue_version")


def record_changes(apps: StateApps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    catalogue_triggers.install(schema_editor.connection)


def stop_recording(apps: StateApps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        schema_editor.execute(
            "CREATE OR REPLACE FUNCTION partners_bump_catalogue_version() RETURNS trigger "
            f"LANGUAGE plpgsql AS $$ BEGIN {before.BUMP[vendor]}; RETURN NULL; END $$"
        )
        return
    create, drop = before._statements(vendor)
    for sql in [*drop, *create]:
        schema_editor.execute(sql)


class Migration(migrations.Migration):
    dependencies = [
        ("partners", "0008_product_expectations"),
    ]

    operations = [
        migrations.CreateModel(
            name="CatalogueChange",
            fields=[
                ("id", models.BigAutoField(primary_key=True, serialize=False)),
                ("partner_id", models.UUIDField()),
                ("product_id", models.UUIDField(null=True)),
                ("changed_at", models.DateTimeField(db_index=True)),
            ],
        ),
        migrations.RunPython(record_changes, stop_recording),
    ]
