from importlib import import_module

from django.apps import AppConfig


class BillingConfig(AppConfig):
    name = "billing"
    verbose_name = "Billing"

    def import_models(self) -> None:
        super().import_models()
        # Models outside billing.models, registered while the registry is being built.
        import_module("billing.daily_revenue")
