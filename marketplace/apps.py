from django.apps import AppConfig


class MarketplaceConfig(AppConfig):
    name = "marketplace"
    verbose_name = "Marketplace (routing)"

    def ready(self) -> None:
        from consent import compliance
        from marketplace import compliance_lookup

        # Compliance can start from a referral id (consent cannot look referrals up itself).
        compliance.register_subject_resolver(
            kind=compliance_lookup.KIND, resolve=compliance_lookup.referral_subject
        )
