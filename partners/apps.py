from importlib import import_module

from django.apps import AppConfig
from django.db.models.signals import post_migrate


class PartnersConfig(AppConfig):
    name = "partners"
    verbose_name = "Partners"

    def import_models(self) -> None:
        super().import_models()
        # Models outside partners.models, registered while the registry is being built.
        import_module("partners.registry")

    def ready(self) -> None:
        from partners import (
            registry_admin,  # noqa: F401  the licence admin
            tasks,  # noqa: F401  registers the tasks outbound queues by name
        )
        from partners.catalogue_triggers import reinstall_after_migrate
        from partners.roles import ensure_role_groups

        # Every app's post_migrate, not only ours: billing's permissions exist only after
        # billing's turn, so the groups are complete after the last app.
        post_migrate.connect(ensure_role_groups, dispatch_uid="partners-role-groups")
        # SQLite drops a table's triggers when a migration rebuilds it: put them back.
        post_migrate.connect(reinstall_after_migrate, dispatch_uid="partners-catalogue-triggers")
