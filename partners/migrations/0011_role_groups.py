"""The staff roles' groups exist from the first ``migrate`` on (issue 12: "roles created by a
migration"). Their permissions are set by ``partners.roles.ensure_role_groups`` after every
``migrate`` (post_migrate), as models of later apps bring theirs."""

from __future__ import annotations

from typing import Any

from django.db import migrations

# Names as of this migration (partners.roles and partners.permissions name them in code).
ROLE_GROUPS = ("ops", "finance", "compliance", "partner_staff")


def create_groups(apps: Any, schema_editor: Any) -> None:
    group_model = apps.get_model("auth", "Group")
    for name in ROLE_GROUPS:
        group_model.objects.using(schema_editor.connection.alias).get_or_create(name=name)


class Migration(migrations.Migration):
    dependencies = [
        ("auth", "0012_alter_user_first_name_max_length"),
        ("partners", "0010_licences_fees_suppression"),
    ]

    # Reversing keeps the groups: they may hold people by then.
    operations = [migrations.RunPython(create_groups, migrations.RunPython.noop)]
