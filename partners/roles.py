"""Staff roles: the groups operator staff are put in, and what each may do in the admin.

- ``ops`` runs the marketplace: partners, products and their change requests, traffic
  sources, API keys, webhook endpoints and deliveries (replays, secret rotation); reads
  referrals, leads, auctions and delivery attempts; invites partner staff to the partner
  portal and revokes their access.
- ``finance`` runs billing: fee schedules, invoices (issue, void), credit notes, payments
  (record, allocate), billing profiles, return reviews, exchange rates; reads charges and
  the partners, products, leads and events they come from.
- ``compliance`` reads consent records, the ledger and the referrals and leads they
  concern; exports audit bundles and verifies the ledger (``consent.AuditJob``).
  Revealing decrypted data (``consent.reveal_subject``), erasing
  (``consent.erase_subject``), withdrawing consent and signing checkpoints are not part of
  any role: each is given to named people on purpose.
- ``partner_staff`` (see ``partners.permissions``) read their own partners' rows only.

Permissions are named by ``app_label.codename`` strings, so this module (in the lowest
layer) names billing's permissions without importing billing. Each group holds exactly
the permissions listed here that exist: the groups are created by a migration
(``partners/migrations/0011_role_groups``), and a ``post_migrate`` receiver sets their
permissions after every ``migrate`` (so a model added later, such as
``billing.ExchangeRate``, gets its permissions once its migration has run) and again after
a test database is flushed. Give anything beyond a role to named users, not to the group:
the next ``migrate`` resets it.
"""

from __future__ import annotations

from typing import Any

from django.apps import apps as global_apps
from django.db.models import Q

from partners.permissions import PARTNER_STAFF_GROUP, PARTNER_STAFF_MODEL_PERMS

OPS_GROUP = "ops"
FINANCE_GROUP = "finance"
COMPLIANCE_GROUP = "compliance"

VIEW = ("view",)
RUN = ("view", "add", "change")
ACT = ("view", "change")  # actions on existing rows (approve, revoke, replay, rotate)
ALL = ("view", "add", "change", "delete")


def _perms(app_label: str, models: dict[str, tuple[str, ...]]) -> list[str]:
    return [
        f"{app_label}.{action}_{model}" for model, actions in models.items() for action in actions
    ]


ROLES: dict[str, list[str]] = {
    OPS_GROUP: [
        *_perms(
            "partners",
            {
                "partner": RUN,
                "product": RUN,
                "productchangerequest": ACT,
                "trafficsource": RUN,
                "apikey": ACT,
                "webhookendpoint": ACT,
                "webhookmessage": ACT,  # replaying deliveries
                "webhookattempt": VIEW,
                "partnerlicence": RUN,  # the partner registry
            },
        ),
        *_perms(
            "marketplace",
            {
                "referral": VIEW,
                "lead": VIEW,
                "leadevent": VIEW,
                "deliveryattempt": VIEW,
                "auction": VIEW,
                "pingattempt": VIEW,
                # The strategy lab: versions are added, never edited; promotions are
                # actions on a version or an experiment (change), logged as their own rows.
                "strategy": RUN,
                "strategyversion": RUN,
                "experiment": RUN,
                "arm": ALL,  # edited inline while the experiment is a draft
                "strategypromotion": VIEW,
                "routingdecision": VIEW,  # why a referral went where it went
                "ruleset": ("view", "add"),  # append-only: a change is a new version
            },
        ),
        *_perms("billing", {"exchangerate": VIEW, "dailyrevenue": VIEW}),
        # The dashboard (billing.dashboard.views says who sees it and why).
        *_perms("marketplace", {"dailyfunnel": VIEW}),
        # Partner portal: invite partner staff (and revoke), read what they did there.
        *_perms("portal", {"partnerinvitation": RUN, "portalaction": VIEW}),
    ],
    FINANCE_GROUP: [
        *_perms("partners", {"partner": VIEW, "product": VIEW}),
        *_perms("marketplace", {"lead": VIEW, "leadevent": VIEW, "dailyfunnel": VIEW}),
        *_perms(
            "billing",
            {
                "feeschedule": ALL,
                "feetier": ALL,
                "charge": VIEW,  # the ledger is append-only: charges come from events
                "invoice": ACT,  # issue and void
                "invoiceline": VIEW,
                "creditnote": VIEW,
                "creditnoteline": VIEW,
                "payment": RUN,  # record and allocate
                "paymentallocation": ("view", "add"),
                "partnerbillingprofile": RUN,
                "returnreview": ACT,  # approve or reject
                "exchangerate": ALL,
                "pendingfee": VIEW,  # fees waiting for an exchange rate
                "issueoverride": VIEW,  # invoices issued despite reconciliation differences
                "dailyrevenue": VIEW,  # the dashboard
            },
        ),
    ],
    COMPLIANCE_GROUP: [
        *_perms(
            "consent",
            {
                "consenttext": VIEW,
                "consentgrant": VIEW,
                "consentwithdrawal": VIEW,
                "disclosure": VIEW,
                "deletionrequest": VIEW,
                "ledgerentry": VIEW,
                "checkpoint": VIEW,
                "subject": VIEW,
                "revealrecord": VIEW,
                # Exports and verifications: started from the admin, the row their record.
                "auditjob": ("view", "add"),
            },
        ),
        *_perms(
            "marketplace",
            {"referral": VIEW, "lead": VIEW, "routingdecision": VIEW, "ruleset": VIEW},
        ),
        *_perms("partners", {"partnerlicence": VIEW}),
    ],
    PARTNER_STAFF_GROUP: list(PARTNER_STAFF_MODEL_PERMS),
}


def ensure_role_groups(**kwargs: Any) -> None:
    """``post_migrate`` receiver: create each role's group and give it exactly the role's
    permissions that exist yet (idempotent)."""
    apps = kwargs.get("apps") or global_apps
    try:
        group_model = apps.get_model("auth", "Group")
        permission_model = apps.get_model("auth", "Permission")
    except LookupError:
        return  # auth is not migrated yet
    using = kwargs.get("using", "default")
    for name, perms in ROLES.items():
        query = Q(pk__in=[])
        for perm in perms:
            app_label, codename = perm.split(".", 1)
            query |= Q(content_type__app_label=app_label, codename=codename)
        group, _ = group_model.objects.using(using).get_or_create(name=name)
        group.permissions.set(permission_model.objects.using(using).filter(query))
