from importlib import import_module

from django.apps import AppConfig


class MarketplaceConfig(AppConfig):
    name = "marketplace"
    verbose_name = "Marketplace (routing)"

    def import_models(self) -> None:
        super().import_models()
        # Models outside marketplace.models' imports, registered while the registry is built.
        import_module("marketplace.models.regulation")

    def ready(self) -> None:
        from consent import compliance
        from marketplace import (
            compliance_lookup,
            regulation_admin,  # noqa: F401  the rule sets' admin
        )

        # Compliance can start from a referral id (consent cannot look referrals up itself).
        compliance.register_subject_resolver(
            kind=compliance_lookup.KIND, resolve=compliance_lookup.referral_subject
        )
