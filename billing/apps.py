from django.apps import AppConfig


class BillingConfig(AppConfig):
    name = "billing"
    verbose_name = "Billing"

    def ready(self) -> None:
        # Billing listens to marketplace events; marketplace never imports billing.
        from billing import receivers  # noqa: F401
