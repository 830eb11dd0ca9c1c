"""The "compliance" group: read-only access to consent records, the ledger and the referrals
they concern.

Kept in step by a ``post_migrate`` receiver rather than a data migration: it runs after every
``migrate`` (so models added later get their view permission), after the permissions of
every app exist, and again after a test database is flushed. Revealing decrypted data
(``consent.reveal_subject``) and erasing (``consent.erase_subject``) are deliberately not
part of it: each is given to named people on purpose.
"""

from __future__ import annotations

from typing import Any

from django.apps import apps as global_apps

COMPLIANCE_GROUP = "compliance"
VIEW_MODELS = {
    "consent": (
        "consenttext",
        "consentgrant",
        "consentwithdrawal",
        "disclosure",
        "deletionrequest",
        "ledgerentry",
        "checkpoint",
        "subject",
        "revealrecord",
    ),
    "marketplace": ("referral", "lead"),
}


def ensure_compliance_group(**kwargs: Any) -> None:
    """Create the group and give it every view permission that exists yet (idempotent)."""
    apps = kwargs.get("apps") or global_apps
    try:
        group_model = apps.get_model("auth", "Group")
        permission_model = apps.get_model("auth", "Permission")
    except LookupError:
        return  # auth is not migrated yet
    using = kwargs.get("using", "default")
    group, _ = group_model.objects.using(using).get_or_create(name=COMPLIANCE_GROUP)
    for app_label, models in VIEW_MODELS.items():
        permissions = permission_model.objects.using(using).filter(
            content_type__app_label=app_label, codename__in=[f"view_{m}" for m in models]
        )
        group.permissions.add(*permissions)
