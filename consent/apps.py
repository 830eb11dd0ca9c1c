from django.apps import AppConfig
from django.db.models.signals import post_migrate


class ConsentConfig(AppConfig):
    name = "consent"
    verbose_name = "Consent vault and ledger"

    def ready(self) -> None:
        from consent import checks  # noqa: F401  (registers the "vault" system check)
        from consent.roles import ensure_compliance_group

        post_migrate.connect(ensure_compliance_group, dispatch_uid="consent-compliance-group")
