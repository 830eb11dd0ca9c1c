"""Consent grants take the mode of their referral (the key that sent it): existing sandbox
referrals mark their grants sandbox, so sandbox keys keep reaching them and live keys don't."""

from django.db import migrations


def mark_sandbox_grants(apps, schema_editor):
    Referral = apps.get_model("marketplace", "Referral")
    ConsentGrant = apps.get_model("consent", "ConsentGrant")
    sandbox_grants = Referral.objects.filter(is_sandbox=True, grant__isnull=False).values(
        "grant_id"
    )
    ConsentGrant.objects.filter(id__in=sandbox_grants).update(is_sandbox=True)


class Migration(migrations.Migration):
    dependencies = [
        ("marketplace", "0005_revenue_events"),
        ("consent", "0004_grant_key_mode"),
    ]

    operations = [migrations.RunPython(mark_sandbox_grants, migrations.RunPython.noop)]
