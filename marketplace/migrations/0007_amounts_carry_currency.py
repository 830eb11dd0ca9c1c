"""Every amount carries its currency: events with an amount or principal, auction bids (on
the lead and on the ping) and a lead's latest approved amount and principal get a currency
column. Rows stored before had no currency
field; their amounts were in the referral's currency (intake accepted CNY only and bids were
asked in the ping's currency), so that is what the backfill writes."""

from django.db import migrations, models
from django.db.models import OuterRef, Q, Subquery


def backfill(apps, schema_editor):
    Referral = apps.get_model("marketplace", "Referral")
    Lead = apps.get_model("marketplace", "Lead")
    LeadEvent = apps.get_model("marketplace", "LeadEvent")
    PingAttempt = apps.get_model("marketplace", "PingAttempt")
    LeadEvent.objects.filter(Q(amount__isnull=False) | Q(principal__isnull=False)).update(
        currency=Subquery(
            Lead.objects.filter(pk=OuterRef("lead_id")).values("referral__currency")[:1]
        )
    )
    referral_currency = Subquery(
        Referral.objects.filter(pk=OuterRef("referral_id")).values("currency")[:1]
    )
    Lead.objects.filter(bid_amount__isnull=False).update(bid_currency=referral_currency)
    Lead.objects.filter(
        Q(approved_amount__isnull=False) | Q(funded_principal__isnull=False)
    ).update(outcome_currency=referral_currency)
    PingAttempt.objects.filter(bid__isnull=False).update(
        bid_currency=Subquery(
            Referral.objects.filter(auction__pk=OuterRef("auction_id")).values("currency")[:1]
        )
    )


class Migration(migrations.Migration):
    dependencies = [
        ("marketplace", "0006_grant_mode_from_referral"),
    ]

    operations = [
        migrations.AddField(
            model_name="lead",
            name="bid_currency",
            field=models.CharField(
                blank=True,
                choices=[
                    ("CNY", "Chinese yuan"),
                    ("HKD", "Hong Kong dollar"),
                    ("USD", "US dollar"),
                    ("EUR", "Euro"),
                ],
                default="",
                max_length=3,
            ),
        ),
        migrations.AddField(
            model_name="leadevent",
            name="currency",
            field=models.CharField(
                blank=True,
                choices=[
                    ("CNY", "Chinese yuan"),
                    ("HKD", "Hong Kong dollar"),
                    ("USD", "US dollar"),
                    ("EUR", "Euro"),
                ],
                default="",
                max_length=3,
            ),
        ),
        migrations.AddField(
            model_name="pingattempt",
            name="bid_currency",
            field=models.CharField(
                blank=True,
                choices=[
                    ("CNY", "Chinese yuan"),
                    ("HKD", "Hong Kong dollar"),
                    ("USD", "US dollar"),
                    ("EUR", "Euro"),
                ],
                default="",
                max_length=3,
            ),
        ),
        migrations.AddField(
            model_name="lead",
            name="outcome_currency",
            field=models.CharField(
                blank=True,
                choices=[
                    ("CNY", "Chinese yuan"),
                    ("HKD", "Hong Kong dollar"),
                    ("USD", "US dollar"),
                    ("EUR", "Euro"),
                ],
                default="",
                max_length=3,
            ),
        ),
        migrations.RunPython(backfill, migrations.RunPython.noop),
    ]
