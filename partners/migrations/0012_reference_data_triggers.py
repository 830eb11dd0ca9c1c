"""Licences and suppression keys move the catalogue version too, so routing may cache them
per version (``partners.catalogue_triggers.VERSION_ONLY``)."""

from django.db import migrations
from django.db.backends.base.schema import BaseDatabaseSchemaEditor
from django.db.migrations.state import StateApps

from partners import catalogue_triggers

TABLES = ("partners_partnerlicence", "partners_suppressionkey")


def install(apps: StateApps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    catalogue_triggers.install(schema_editor.connection, TABLES)


def remove(apps: StateApps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    catalogue_triggers.uninstall(schema_editor.connection, TABLES)


class Migration(migrations.Migration):
    dependencies = [
        ("partners", "0011_role_groups"),
    ]

    operations = [migrations.RunPython(install, remove)]
