"""Routing holds become rows, one per reason (partners.holds): the one shared text field
``routing_hold`` of partners and products, written by ops, the credit limit and budgets
alike, is copied into ``RoutingHold`` rows and removed. Billing's own texts map to their
reasons; any other text was typed by ops and becomes an ops pause with the text as its
note."""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models
from django.utils import timezone

# The texts billing wrote before holds were rows (billing.credit, billing.budgets).
BILLING_TEXTS = {"over credit limit": "credit_limit", "monthly budget reached": "budget"}


def _reason_and_note(text):
    reason = BILLING_TEXTS.get(text)
    return (reason, "") if reason else ("ops_pause", text)


def holds_to_rows(apps, schema_editor):
    Partner = apps.get_model("partners", "Partner")
    Product = apps.get_model("partners", "Product")
    RoutingHold = apps.get_model("partners", "RoutingHold")
    now = timezone.now()
    rows = []
    for partner_id, text, since in Partner.objects.exclude(routing_hold="").values_list(
        "id", "routing_hold", "updated_at"
    ):
        reason, note = _reason_and_note(text)
        rows.append(
            RoutingHold(partner_id=partner_id, reason=reason, note=note, created_at=since or now)
        )
    for product_id, partner_id, text, since in Product.objects.exclude(routing_hold="").values_list(
        "id", "partner_id", "routing_hold", "updated_at"
    ):
        reason, note = _reason_and_note(text)
        rows.append(
            RoutingHold(
                partner_id=partner_id,
                product_id=product_id,
                reason=reason,
                note=note,
                created_at=since or now,
            )
        )
    RoutingHold.objects.bulk_create(rows)


def rows_to_holds(apps, schema_editor):
    # Back to one text per row: the oldest hold in force wins (the field held one reason).
    Partner = apps.get_model("partners", "Partner")
    Product = apps.get_model("partners", "Product")
    RoutingHold = apps.get_model("partners", "RoutingHold")
    texts = {v: k for k, v in BILLING_TEXTS.items()}
    for hold in RoutingHold.objects.filter(lifted_at__isnull=True).order_by("-created_at"):
        text = (hold.note or "paused by ops") if hold.reason == "ops_pause" else texts[hold.reason]
        if hold.product_id:
            Product.objects.filter(pk=hold.product_id).update(routing_hold=text[:200])
        else:
            Partner.objects.filter(pk=hold.partner_id).update(routing_hold=text[:200])


class Migration(migrations.Migration):
    dependencies = [
        ("partners", "0005_budgets_shared_limits"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name="RoutingHold",
            fields=[
                ("id", models.BigAutoField(primary_key=True, serialize=False)),
                (
                    "reason",
                    models.CharField(
                        choices=[
                            ("ops_pause", "Paused by ops"),
                            ("credit_limit", "Over credit limit"),
                            ("budget", "Monthly budget reached"),
                        ],
                        max_length=16,
                    ),
                ),
                ("note", models.CharField(blank=True, max_length=200)),
                ("created_at", models.DateTimeField()),
                ("lifted_at", models.DateTimeField(blank=True, null=True)),
                (
                    "created_by",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="+",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
                (
                    "lifted_by",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="+",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
                (
                    "partner",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="routing_holds",
                        to="partners.partner",
                    ),
                ),
                (
                    "product",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="routing_holds",
                        to="partners.product",
                    ),
                ),
            ],
            options={
                "ordering": ["created_at", "id"],
                "constraints": [
                    models.UniqueConstraint(
                        condition=models.Q(("lifted_at__isnull", True), ("product__isnull", True)),
                        fields=("partner", "reason"),
                        name="one_active_partner_hold_per_reason",
                    ),
                    models.UniqueConstraint(
                        condition=models.Q(("lifted_at__isnull", True), ("product__isnull", False)),
                        fields=("product", "reason"),
                        name="one_active_product_hold_per_reason",
                    ),
                ],
            },
        ),
        migrations.RunPython(holds_to_rows, rows_to_holds),
        migrations.RemoveField(
            model_name="partner",
            name="routing_hold",
        ),
        migrations.RemoveField(
            model_name="product",
            name="routing_hold",
        ),
    ]
