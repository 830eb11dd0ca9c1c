"""Regulatory rule sets, strategies and experiments move the catalogue version, so routing
may cache them per version (``partners.catalogue_triggers.VERSION_ONLY``)."""

from django.db import migrations
from django.db.backends.base.schema import BaseDatabaseSchemaEditor
from django.db.migrations.state import StateApps

from partners import catalogue_triggers

TABLES = (
    "marketplace_ruleset",
    "marketplace_strategy",
    "marketplace_strategyversion",
    "marketplace_experiment",
    "marketplace_arm",
)


def install(apps: StateApps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    catalogue_triggers.install(schema_editor.connection, TABLES)


def remove(apps: StateApps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    catalogue_triggers.uninstall(schema_editor.connection, TABLES)


class Migration(migrations.Migration):
    dependencies = [
        ("marketplace", "0016_learning_watermark_indexes"),
        ("partners", "0012_reference_data_triggers"),
    ]

    operations = [migrations.RunPython(install, remove)]
