"""The database holds the rule: an amount never without its currency (after 0007's
backfill, in its own migration so that PostgreSQL alters the tables after the updates have
committed)."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("marketplace", "0007_amounts_carry_currency"),
    ]

    operations = [
        migrations.AddConstraint(
            model_name="lead",
            constraint=models.CheckConstraint(
                condition=models.Q(
                    models.Q(("bid_amount__isnull", True), ("bid_currency", "")),
                    models.Q(
                        ("bid_amount__isnull", False),
                        ("bid_currency__in", ["CNY", "HKD", "USD", "EUR"]),
                    ),
                    _connector="OR",
                ),
                name="lead_bid_has_currency",
            ),
        ),
        migrations.AddConstraint(
            model_name="lead",
            constraint=models.CheckConstraint(
                condition=models.Q(
                    models.Q(
                        ("approved_amount__isnull", True),
                        ("funded_principal__isnull", True),
                        ("outcome_currency", ""),
                    ),
                    models.Q(
                        models.Q(
                            ("approved_amount__isnull", False),
                            ("funded_principal__isnull", False),
                            _connector="OR",
                        ),
                        ("outcome_currency__in", ["CNY", "HKD", "USD", "EUR"]),
                    ),
                    _connector="OR",
                ),
                name="lead_outcome_has_currency",
            ),
        ),
        migrations.AddConstraint(
            model_name="leadevent",
            constraint=models.CheckConstraint(
                condition=models.Q(
                    models.Q(
                        ("amount__isnull", True), ("currency", ""), ("principal__isnull", True)
                    ),
                    models.Q(
                        models.Q(
                            ("amount__isnull", False), ("principal__isnull", False), _connector="OR"
                        ),
                        ("currency__in", ["CNY", "HKD", "USD", "EUR"]),
                    ),
                    _connector="OR",
                ),
                name="event_amount_has_currency",
            ),
        ),
        migrations.AddConstraint(
            model_name="pingattempt",
            constraint=models.CheckConstraint(
                condition=models.Q(
                    models.Q(("bid__isnull", True), ("bid_currency", "")),
                    models.Q(
                        ("bid__isnull", False), ("bid_currency__in", ["CNY", "HKD", "USD", "EUR"])
                    ),
                    _connector="OR",
                ),
                name="ping_bid_has_currency",
            ),
        ),
    ]
