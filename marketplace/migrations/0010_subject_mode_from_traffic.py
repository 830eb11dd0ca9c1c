"""Vault subjects take the mode of their traffic: a subject only ever referred (or given
consent) in sandbox is a sandbox subject; one with any live referral or grant stays live.

Before subjects had a mode, a sandbox referral carrying a live person's ID number joined
that person's subject. Such mixed subjects stay live (splitting one would mean re-encrypting
its data under a new subject id); their sandbox leads keep ``Lead.is_sandbox``, and routing
counts only leads of the referral's own mode in a dedupe window, so they never block live
traffic. New sandbox referrals of that person get a sandbox subject of their own.
"""

from django.db import migrations
from django.db.models import Q


def mark_sandbox_subjects(apps, schema_editor):
    Subject = apps.get_model("consent", "Subject")
    ConsentGrant = apps.get_model("consent", "ConsentGrant")
    Referral = apps.get_model("marketplace", "Referral")

    def subjects_of(model, *, is_sandbox):
        return model.objects.filter(is_sandbox=is_sandbox).values("subject_id")

    # One UPDATE in the database: no id lists held in memory, whatever the table sizes.
    Subject.objects.filter(
        Q(id__in=subjects_of(Referral, is_sandbox=True))
        | Q(id__in=subjects_of(ConsentGrant, is_sandbox=True))
    ).exclude(id__in=subjects_of(Referral, is_sandbox=False)).exclude(
        id__in=subjects_of(ConsentGrant, is_sandbox=False)
    ).update(is_sandbox=True)


class Migration(migrations.Migration):
    dependencies = [
        ("marketplace", "0009_event_partner_units_index"),
        ("consent", "0005_subject_key_mode"),
    ]

    operations = [migrations.RunPython(mark_sandbox_subjects, migrations.RunPython.noop)]
