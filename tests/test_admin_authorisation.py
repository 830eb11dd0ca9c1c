"""The admin's authorisation matrix: every admin URL (each registered ModelAdmin's
changelist, add, change, delete and history pages, every custom view from ``get_urls()``
and every action POSTed to the changelist) for every staff role, against the table below.

A registered admin, custom view or action without a row in ``EXPECTED`` fails
``test_every_admin_page_and_action_has_a_row``: place a new admin page in the table when
you add it.

Allow: 200 (an action also: it ran, i.e. an intermediate page or a redirect without
"No action selected"). Deny: 403 or a redirect to the login page; for an action also
"not offered and not run" (Django's changelist answers a POST naming an action the user
may not use with its "No action selected" redirect). Never a 500.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from django.apps import apps
from django.contrib import admin
from django.contrib.admin.utils import quote
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.contrib.messages import get_messages
from django.db import models, transaction
from django.http import HttpResponse
from django.test import Client
from django.urls import URLPattern, reverse
from django.utils import timezone

from billing import tasks as billing_tasks
from billing.invoicing import generate_invoices, issue_invoice
from billing.models import (
    Invoice,
    PartnerBillingProfile,
    Payment,
    PaymentAllocation,
)
from billing.payments import record_payment
from consent import audit_jobs, gate, grants, ledger
from consent import tasks as consent_tasks
from consent.models import ConsentText
from marketplace.experiments import strategies
from marketplace.models import (
    Arm,
    Auction,
    AuctionMode,
    DeliveryAttempt,
    Experiment,
    Lead,
    Strategy,
)
from marketplace.regulation import publish_rule_set
from partners import products, webhook_delivery
from partners.adminutils import PartnerScopedAdminMixin
from partners.keys import issue_api_key
from partners.models import Partner
from partners.permissions import grant_partner_access
from partners.webhook_signing import create_endpoint
from tests.billing.builders import LeadBuilder, current_period, post, report, schedule
from tests.factories import PartnerFactory, ProductFactory

SU = "superuser"
OPS = "ops"
FIN = "finance"
COMP = "compliance"
PA = "partner staff of A"
NOBODY = "staff, no permission"
ROLES = (SU, OPS, FIN, COMP, PA, NOBODY)
NONE: frozenset[str] = frozenset()

STANDARD_PAGES = ("changelist", "add", "change", "delete", "history")

# model label -> page -> the roles allowed. Pages: the five standard ones, "view:<url
# name>" for each custom view, "action:<name>" for each action (delete_selected included).
# The object a page acts on is partner A's (for models that carry a partner).
EXPECTED: dict[str, dict[str, frozenset[str]]] = {
    "auth.group": {
        "changelist": frozenset({SU}),
        "add": frozenset({SU}),
        "change": frozenset({SU}),
        "delete": frozenset({SU}),
        "history": frozenset({SU}),
        "action:delete_selected": frozenset({SU}),
    },
    "auth.user": {
        "changelist": frozenset({SU}),
        "add": frozenset({SU}),
        "change": frozenset({SU}),
        "delete": frozenset({SU}),
        "history": frozenset({SU}),
        "view:auth_user_password_change": frozenset({SU}),
        "action:delete_selected": frozenset({SU}),
    },
    # partners: ops run them; finance reads partners and products; partner staff read
    # their own (they manage nothing here: partner A is granted view only).
    "partners.partner": {
        "changelist": frozenset({SU, OPS, FIN, PA}),
        "add": frozenset({SU, OPS}),
        "change": frozenset({SU, OPS, FIN, PA}),
        "delete": frozenset({SU}),
        "history": frozenset({SU, OPS, FIN, PA}),
        "view:partners_partner_permissions": frozenset({SU}),
        "view:partners_partner_permissions_manage_user": frozenset({SU}),
        "view:partners_partner_permissions_manage_group": frozenset({SU}),
        "view:partners_partner_pause": frozenset({SU, OPS}),  # with a reason
        "view:partners_partner_resume": frozenset({SU, OPS}),
        "view:partners_partner_staff": frozenset({SU, OPS}),  # grant and revoke access
        "action:issue_live_key": frozenset({SU, OPS}),
        "action:issue_sandbox_key": frozenset({SU, OPS}),
        "action:delete_selected": frozenset({SU}),
    },
    "partners.product": {
        "changelist": frozenset({SU, OPS, FIN, PA}),
        "add": frozenset({SU, OPS}),
        "change": frozenset({SU, OPS, FIN, PA}),
        "delete": frozenset({SU}),
        "history": frozenset({SU, OPS, FIN, PA}),
        "action:delete_selected": frozenset({SU}),
    },
    "partners.partnerlicence": {  # the partner registry: ops keep it, compliance reads it
        "changelist": frozenset({SU, OPS, COMP}),
        "add": frozenset({SU, OPS}),
        "change": frozenset({SU, OPS, COMP}),
        "delete": frozenset({SU}),
        "history": frozenset({SU, OPS, COMP}),
        "action:delete_selected": frozenset({SU}),
    },
    "marketplace.ruleset": {  # append-only versions: a change is a new version
        "changelist": frozenset({SU, OPS, COMP}),
        "add": frozenset({SU, OPS}),
        "change": frozenset({SU, OPS, COMP}),
        "delete": NONE,
        "history": frozenset({SU, OPS, COMP}),
        "action:delete_selected": NONE,
    },
    "partners.trafficsource": {
        "changelist": frozenset({SU, OPS}),
        "add": frozenset({SU, OPS}),
        "change": frozenset({SU, OPS}),
        "delete": frozenset({SU}),
        "history": frozenset({SU, OPS}),
        "action:issue_key": frozenset({SU, OPS}),
        "action:delete_selected": frozenset({SU}),
    },
    "partners.apikey": {
        "changelist": frozenset({SU, OPS, PA}),
        "add": NONE,  # issued from the partner or source page, shown once
        "change": frozenset({SU, OPS, PA}),
        "delete": frozenset({SU}),
        "history": frozenset({SU, OPS, PA}),
        "action:revoke": frozenset({SU, OPS}),
        "action:delete_selected": frozenset({SU}),
    },
    "partners.webhookmessage": {
        "changelist": frozenset({SU, OPS, PA}),
        "add": NONE,
        "change": frozenset({SU, OPS, PA}),
        "delete": NONE,
        "history": frozenset({SU, OPS, PA}),
        "action:replay": frozenset({SU, OPS}),
        "action:delete_selected": NONE,
    },
    "partners.webhookendpoint": {
        "changelist": frozenset({SU, OPS, PA}),
        "add": NONE,  # created with a secret shown once
        "change": frozenset({SU, OPS, PA}),
        "delete": frozenset({SU}),
        "history": frozenset({SU, OPS, PA}),
        "action:rotate": frozenset({SU, OPS}),
        "action:delete_selected": frozenset({SU}),
    },
    "partners.productchangerequest": {
        "changelist": frozenset({SU, OPS, PA}),
        "add": NONE,  # partners propose through the API
        "change": frozenset({SU, OPS, PA}),
        "delete": frozenset({SU}),
        "history": frozenset({SU, OPS, PA}),
        "view:partners_productchangerequest_decide": frozenset({SU, OPS}),  # the object is pending
        "action:approve": frozenset({SU, OPS}),
        "action:reject": frozenset({SU, OPS}),
        "action:delete_selected": frozenset({SU}),
    },
    # consent: compliance reads; erasing, withdrawing, revealing, signing and publishing
    # are given to named people (here only the superuser has them).
    "consent.consenttext": {  # the object is an unpublished draft
        "changelist": frozenset({SU, COMP}),
        "add": frozenset({SU}),
        "change": frozenset({SU, COMP}),
        "delete": frozenset({SU}),
        "history": frozenset({SU, COMP}),
        "action:publish": frozenset({SU}),
        "action:delete_selected": frozenset({SU}),
    },
    "consent.subject": {
        "changelist": frozenset({SU, COMP}),
        "add": NONE,
        "change": frozenset({SU, COMP}),
        "delete": NONE,
        "history": frozenset({SU, COMP}),  # the consent history (it takes this URL)
        "view:consent_subject_find": frozenset({SU, COMP}),
        "view:consent_subject_reveal": frozenset({SU}),
        "action:erase": frozenset({SU}),
        "action:delete_selected": NONE,
    },
    "consent.consentgrant": {
        "changelist": frozenset({SU, COMP}),
        "add": NONE,
        "change": frozenset({SU, COMP}),
        "delete": NONE,
        "history": frozenset({SU, COMP}),
        "view:consent_consentgrant_withdraw": frozenset({SU}),  # reason and confirmation
        "action:withdraw_consent": frozenset({SU}),
        "action:delete_selected": NONE,
    },
    "consent.consentwithdrawal": {
        "changelist": frozenset({SU, COMP}),
        "add": NONE,
        "change": frozenset({SU, COMP}),
        "delete": NONE,
        "history": frozenset({SU, COMP}),
        "action:delete_selected": NONE,
    },
    "consent.deletionrequest": {
        "changelist": frozenset({SU, COMP, PA}),
        "add": NONE,
        "change": frozenset({SU, COMP, PA}),
        "delete": NONE,
        "history": frozenset({SU, COMP, PA}),
        "action:delete_selected": NONE,
    },
    "consent.revealrecord": {
        "changelist": frozenset({SU, COMP}),
        "add": NONE,
        "change": frozenset({SU, COMP}),
        "delete": NONE,
        "history": frozenset({SU, COMP}),
        "action:delete_selected": NONE,
    },
    "consent.disclosure": {
        "changelist": frozenset({SU, COMP}),
        "add": NONE,
        "change": frozenset({SU, COMP}),
        "delete": NONE,
        "history": frozenset({SU, COMP}),
        "action:delete_selected": NONE,
    },
    "consent.ledgerentry": {
        "changelist": frozenset({SU, COMP}),
        "add": NONE,
        "change": frozenset({SU, COMP}),
        "delete": NONE,
        "history": frozenset({SU, COMP}),
        "action:delete_selected": NONE,
    },
    "consent.checkpoint": {
        "changelist": frozenset({SU, COMP}),
        "add": NONE,
        "change": frozenset({SU, COMP}),
        "delete": NONE,
        "history": frozenset({SU, COMP}),
        "action:checkpoint_now": frozenset({SU}),
        "action:delete_selected": NONE,
    },
    # Exports and verifications: compliance starts them; the object is compliance's export,
    # whose progress, status and file answer the officer who asked and nobody else.
    "consent.auditjob": {
        "changelist": frozenset({SU, COMP}),
        "add": NONE,
        "change": frozenset({SU, COMP}),
        "delete": NONE,
        "history": frozenset({SU, COMP}),
        "view:consent_auditjob_export": frozenset({SU, COMP}),
        "view:consent_auditjob_verify": frozenset({SU, COMP}),
        "view:consent_auditjob_progress": frozenset({COMP}),
        "view:consent_auditjob_status": frozenset({COMP}),
        "view:consent_auditjob_download": frozenset({COMP}),
        "action:delete_selected": NONE,
    },
    # marketplace: facts, read-only for everyone.
    "marketplace.referral": {
        "changelist": frozenset({SU, OPS, COMP}),
        "add": NONE,
        "change": frozenset({SU, OPS, COMP}),
        "delete": NONE,
        "history": frozenset({SU, OPS, COMP}),
        "action:delete_selected": NONE,
    },
    "marketplace.lead": {
        "changelist": frozenset({SU, OPS, FIN, COMP, PA}),
        "add": NONE,
        "change": frozenset({SU, OPS, FIN, COMP, PA}),
        "delete": NONE,
        "history": frozenset({SU, OPS, FIN, COMP, PA}),
        "action:delete_selected": NONE,
    },
    "marketplace.leadevent": {
        "changelist": frozenset({SU, OPS, FIN, PA}),
        "add": NONE,
        "change": frozenset({SU, OPS, FIN, PA}),
        "delete": NONE,
        "history": frozenset({SU, OPS, FIN, PA}),
        "action:delete_selected": NONE,
    },
    "marketplace.deliveryattempt": {
        "changelist": frozenset({SU, OPS}),
        "add": NONE,
        "change": frozenset({SU, OPS}),
        "delete": NONE,
        "history": frozenset({SU, OPS}),
        "action:delete_selected": NONE,
    },
    "marketplace.auction": {
        "changelist": frozenset({SU, OPS}),
        "add": NONE,
        "change": frozenset({SU, OPS}),
        "delete": NONE,
        "history": frozenset({SU, OPS}),
        "action:delete_selected": NONE,
    },
    # The strategy lab: ops run it; versions and promotions are never deleted.
    "marketplace.strategy": {
        "changelist": frozenset({SU, OPS}),
        "add": frozenset({SU, OPS}),
        "change": frozenset({SU, OPS}),
        "delete": NONE,
        "history": frozenset({SU, OPS}),
        "action:delete_selected": NONE,
    },
    "marketplace.strategyversion": {
        "changelist": frozenset({SU, OPS}),
        "add": frozenset({SU, OPS}),
        "change": frozenset({SU, OPS}),
        "delete": NONE,
        "history": frozenset({SU, OPS}),
        "action:promote_to_default": frozenset({SU, OPS}),
        "action:delete_selected": NONE,
    },
    "marketplace.experiment": {  # the object is a draft
        "changelist": frozenset({SU, OPS}),
        "add": frozenset({SU, OPS}),
        "change": frozenset({SU, OPS}),
        "delete": frozenset({SU}),
        "history": frozenset({SU, OPS}),
        "action:start": frozenset({SU, OPS}),
        "action:stop": frozenset({SU, OPS}),
        "action:restart": frozenset({SU, OPS}),
        "action:promote": frozenset({SU, OPS}),
        "action:delete_selected": frozenset({SU}),
    },
    "marketplace.strategypromotion": {
        "changelist": frozenset({SU, OPS}),
        "add": NONE,
        "change": frozenset({SU, OPS}),
        "delete": NONE,
        "history": frozenset({SU, OPS}),
        "action:delete_selected": NONE,
    },
    # The partner portal's invitations: ops invite partner staff and revoke them; an
    # invitation is never edited or deleted (revoked instead).
    "portal.partnerinvitation": {
        "changelist": frozenset({SU, OPS}),
        "add": frozenset({SU, OPS}),
        "change": frozenset({SU, OPS}),
        "delete": NONE,
        "history": frozenset({SU, OPS}),
        "action:revoke": frozenset({SU, OPS}),
        "action:delete_selected": NONE,
    },
    "portal.portalaction": {  # what partner staff did in the portal: a read-only log
        "changelist": frozenset({SU, OPS}),
        "add": NONE,
        "change": frozenset({SU, OPS}),
        "delete": NONE,
        "history": frozenset({SU, OPS}),
        "action:delete_selected": NONE,
    },
    # billing: finance's; partner staff read their own charges, invoices, credit notes and
    # payments.
    "billing.feeschedule": {  # the object is a schedule that has priced nothing yet
        "changelist": frozenset({SU, FIN}),
        "add": frozenset({SU, FIN}),
        "change": frozenset({SU, FIN}),
        "delete": frozenset({SU, FIN}),
        "history": frozenset({SU, FIN}),
        "action:delete_selected": frozenset({SU, FIN}),
    },
    "billing.charge": {
        "changelist": frozenset({SU, FIN, PA}),
        "add": NONE,
        "change": frozenset({SU, FIN, PA}),
        "delete": NONE,
        "history": frozenset({SU, FIN, PA}),
        "action:delete_selected": NONE,
    },
    "billing.returnreview": {
        "changelist": frozenset({SU, FIN}),
        "add": NONE,
        "change": frozenset({SU, FIN}),
        "delete": NONE,
        "history": frozenset({SU, FIN}),
        "action:approve": frozenset({SU, FIN}),
        "action:reject": frozenset({SU, FIN}),
        "action:delete_selected": NONE,
    },
    "billing.invoice": {
        "changelist": frozenset({SU, FIN, PA}),
        "add": NONE,
        "change": frozenset({SU, FIN, PA}),
        "delete": NONE,
        "history": frozenset({SU, FIN, PA}),
        "view:billing_invoice_html": frozenset({SU, FIN, PA}),
        "view:billing_invoice_pdf": frozenset({SU, FIN, PA}),
        "view:billing_invoice_csv": frozenset({SU, FIN, PA}),
        "view:billing_invoice_issue": frozenset({SU, FIN}),  # the object is a draft
        "view:billing_invoice_generate": frozenset({SU, FIN}),  # a period's run, in a worker
        "view:billing_invoice_run": frozenset({SU, FIN}),  # its progress page
        "view:billing_invoice_run_status": frozenset({SU, FIN}),  # the JSON it polls
        "action:issue": frozenset({SU, FIN}),
        "action:void": frozenset({SU, FIN}),
        "action:delete_selected": NONE,
    },
    "billing.creditnote": {
        "changelist": frozenset({SU, FIN, PA}),
        "add": NONE,
        "change": frozenset({SU, FIN, PA}),
        "delete": NONE,
        "history": frozenset({SU, FIN, PA}),
        "action:delete_selected": NONE,
    },
    "billing.payment": {
        "changelist": frozenset({SU, FIN, PA}),
        "add": frozenset({SU, FIN}),
        "change": frozenset({SU, FIN, PA}),
        "delete": NONE,
        "history": frozenset({SU, FIN, PA}),
        "view:billing_payment_allocate": frozenset({SU, FIN}),
        "action:allocate_oldest_first": frozenset({SU, FIN}),
        "action:delete_selected": NONE,
    },
    "billing.partnerbillingprofile": {
        "changelist": frozenset({SU, FIN}),
        "add": frozenset({SU, FIN}),
        "change": frozenset({SU, FIN}),
        "delete": frozenset({SU}),
        "history": frozenset({SU, FIN}),
        "action:delete_selected": frozenset({SU}),
    },
    "billing.exchangerate": {  # entered, never edited or deleted: a correction is a new rate
        "changelist": frozenset({SU, OPS, FIN}),
        "add": frozenset({SU, FIN}),
        "change": frozenset({SU, OPS, FIN}),
        "delete": NONE,
        "history": frozenset({SU, OPS, FIN}),
        "action:delete_selected": NONE,
    },
    "billing.issueoverride": {  # invoices issued although reconciliation was not clean
        "changelist": frozenset({SU, FIN}),
        "add": NONE,
        "change": frozenset({SU, FIN}),
        "delete": NONE,
        "history": frozenset({SU, FIN}),
        "action:delete_selected": NONE,
    },
    "billing.pendingfee": {  # fees waiting for an exchange rate
        "changelist": frozenset({SU, FIN}),
        "add": NONE,
        "change": frozenset({SU, FIN}),
        "delete": NONE,
        "history": frozenset({SU, FIN}),
        "action:delete_selected": NONE,
    },
}


# ---------------------------------------------------------------------------------------
# The world: two partners with a row of every registered model each (where the model
# carries a partner), made through the real services.

A_NAME = "Alpha Lending"
B_NAME = "Bravo Credit"
B_BANK_REFERENCE = "BRAVO-BANK-REF-77"


@dataclass
class World:
    a: Partner
    b: Partner
    users: dict[str, Any]
    objects: dict[str, models.Model] = field(default_factory=dict)  # label -> A's (or any)
    b_objects: dict[str, models.Model] = field(default_factory=dict)  # label -> B's


def _partner_rows(leads: LeadBuilder, owner: Partner, key: str) -> list[Lead]:
    product = ProductFactory(partner=owner, name=f"{owner.name} loan")
    schedule(owner)
    issue_api_key(partner=owner)
    create_endpoint(partner=owner, url=f"http://127.0.0.1:9/{key}/hooks")
    webhook_delivery.enqueue(
        partner_id=owner.pk,
        event_type="lead.delivered",
        data={"n": key},
        dedupe_key=f"matrix:{key}",
    )
    products.propose_change(product=product, changes={"dedupe_days": 3})
    PartnerBillingProfile.objects.create(partner=owner)
    now = timezone.now()
    invoiced, reviewed = leads.lead(product=product), leads.lead(product=product)
    for lead in (invoiced, reviewed):
        post(lead, report("accepted", now - timedelta(hours=5)))
    post(invoiced, report("approved", now - timedelta(hours=4)))
    DeliveryAttempt.objects.create(
        lead=invoiced,
        url="http://127.0.0.1:9/post",
        started_at=now - timedelta(hours=6),
        latency_ms=120,
        http_status=200,
        outcome="success",
    )
    return [invoiced, reviewed]


@pytest.fixture
def world(db: None, settings: Any, tmp_path: Path) -> World:
    settings.VAR_DIR = tmp_path / "var"  # where audit bundles are written
    user_model = get_user_model()
    a = PartnerFactory(name=A_NAME, slug="alpha-lending", legal_name=f"{A_NAME} Co., Ltd.")
    b = PartnerFactory(name=B_NAME, slug="bravo-credit", legal_name=f"{B_NAME} Co., Ltd.")
    users: dict[str, Any] = {SU: user_model.objects.create_superuser("root", "r@example.invalid")}
    for role in (OPS, FIN, COMP):
        users[role] = user_model.objects.create_user(role, is_staff=True)
        users[role].groups.add(Group.objects.get(name=role))
    users[PA] = user_model.objects.create_user("alpha-staff", is_staff=True)
    grant_partner_access(user=users[PA], partner=a)
    users[NOBODY] = user_model.objects.create_user("nobody", is_staff=True)
    world = World(a=a, b=b, users=users)

    builder = LeadBuilder()
    rows = {
        a.pk: _partner_rows(builder, a, "a"),
        b.pk: _partner_rows(builder, b, "b"),
    }
    # A also sells in USD: that invoice stays a draft.
    dollar_product = ProductFactory(partner=a, name=f"{A_NAME} dollar loan")
    schedule(a, product=dollar_product, currency="USD")
    post(builder.lead(product=dollar_product), report("accepted", timezone.now()))
    period = current_period()
    for invoice in generate_invoices(period=period):
        if invoice.currency != "USD":
            issue_invoice(invoice_id=invoice.pk)
    now = timezone.now()
    for owner, reference in ((a, "ALPHA-BANK-REF-11"), (b, B_BANK_REFERENCE)):
        record_payment(
            partner_id=owner.pk,
            currency="CNY",
            amount="10.00",
            received_at=now,
            bank_reference=reference,
            allocate=False,
        )
        invoiced, reviewed = rows[owner.pk]
        post(invoiced, report("returned", now - timedelta(hours=1), reason="duplicate"))
        post(reviewed, report("returned", now - timedelta(hours=1), reason="not-a-known-code"))
    generate_invoices(period=period)  # the credit notes of the returns

    # Consent: both partners received the applicant, then the consent was withdrawn.
    lead = rows[a.pk][0]
    grant = lead.referral.grant
    grants.add_matched_recipients(grant=grant, partner_ids=[a.pk, b.pk])
    for owner in (a, b):
        gate.disclose(
            grant_id=grant.id, partner_id=owner.pk, purpose="loan_referral", reference=owner.slug
        )
    grants.withdraw(grant_id=grant.id, channel="admin")
    gate.reveal(
        subject_id=grant.subject_id,
        user=users[SU],
        fields=("full_name",),
        reason="matrix test: a reveal to list",
    )
    ledger.make_checkpoint()
    export = consent_tasks.start_export(user=users[COMP], subject_id=grant.subject_id)
    assert audit_jobs.run(job_id=export.pk).state == "done"
    draft = ConsentText.objects.create(
        version="draft-v2",
        title="Draft wording",
        body="Not published yet.",
        purposes=["loan_referral"],
        data_categories=["name"],
    )
    Auction.objects.create(
        referral=lead.referral, mode=AuctionMode.EXCLUSIVE, max_winners=1, budget_ms=750
    )
    unused_schedule = schedule(a, effective_from=now + timedelta(days=3650))
    _billing_controls(users[SU], {owner: rows[owner.pk][1] for owner in (a, b)})
    _portal_rows(users[PA], (a, b))
    _lab_rows(users[SU])
    publish_rule_set(
        effective_from=now - timedelta(days=1),
        all_in_cost_cap=Decimal("0.2400"),
        min_age=18,
        max_age=None,
        excluded_regions=[],
        note="matrix test",
        created_by=users[SU],
    )

    for model in admin.site._registry:
        label = model._meta.label_lower
        world.objects[label] = _pick(model, a)
        if _partner_path(model) is not None:
            world.b_objects[label] = _pick(model, b)
    world.objects["consent.consenttext"] = draft
    world.objects["billing.feeschedule"] = unused_schedule
    world.objects["billing.invoice"] = Invoice.objects.get(partner=a, status="draft")
    world.objects["auth.user"] = users[NOBODY]
    world.objects["auth.group"] = Group.objects.get(name=COMP)
    return world


def _installed(label: str) -> type[models.Model] | None:
    try:
        return apps.get_model(label)
    except LookupError:
        return None


def _lab_rows(user: Any) -> None:
    """A strategy with a promoted version and a draft experiment with two arms."""
    strategy = Strategy.objects.create(key="broadcast", name="Broadcast")
    first = strategies.create_version(strategy=strategy, kind="shared_broadcast", max_partners=3)
    second = strategies.create_version(strategy=strategy, kind="waterfall", max_partners=2)
    strategies.promote_version(version=first, user=user, reason="matrix test")
    experiment = Experiment.objects.create(key="matrix", name="Matrix")
    Arm.objects.create(
        experiment=experiment, key="control", is_control=True, strategy_version=first
    )
    Arm.objects.create(experiment=experiment, key="waterfall", strategy_version=second)


def _portal_rows(staff: Any, owners: tuple[Partner, ...]) -> None:
    """Per partner, an open portal invitation and a logged portal action."""
    from portal.invitations import issue_invitation
    from portal.models import PortalAction

    for owner in owners:
        issue_invitation(partner=owner, name="Matrix Invitee", email="invitee@example.invalid")
        PortalAction.objects.create(partner=owner, user=staff, kind="key_created", target="matrix")


def _billing_controls(user: Any, leads: dict[Partner, Lead]) -> None:
    """Rows of finance's controls: an exchange rate, per partner a fee waiting for a rate
    and an invoice issued by override (made after the invoices: an open fee holds them)."""
    rate_model = _installed("billing.ExchangeRate")
    if rate_model is not None:
        rate_model._default_manager.create(
            from_currency="USD",
            to_currency="CNY",
            rate=Decimal("7.10000000"),
            effective_from=timezone.now() - timedelta(days=30),
            source="matrix test",
            entered_by=user,
        )
    pending_model = _installed("billing.PendingFee")
    override_model = _installed("billing.IssueOverride")
    for owner, lead in leads.items():
        event = lead.events.order_by("occurred_at").first()
        assert event is not None
        if pending_model is not None:
            pending_model._default_manager.create(
                partner=owner,
                lead=lead,
                event=event,
                kind="cpl",
                from_currency="EUR",
                to_currency="CNY",
                occurred_at=event.occurred_at,
            )
        if override_model is not None:
            override_model._default_manager.create(
                invoice=Invoice.objects.filter(partner=owner, status="issued").first(),
                partner=owner,
                decided_by=user,
                actor=user.get_username(),
                reason="matrix test: issued by override",
                differences=["a difference"],
            )


def _partner_path(model: type[models.Model]) -> str | None:
    model_admin = admin.site._registry[model]
    if isinstance(model_admin, PartnerScopedAdminMixin):
        return model_admin.partner_field
    return None


def _pick(model: type[models.Model], owner: Partner) -> models.Model:
    queryset = model._default_manager.all()
    path = _partner_path(model)
    if path is not None:
        queryset = queryset.filter(**{path: owner.pk})
    obj = queryset.order_by("pk").first()
    assert obj is not None, f"the world has no {model._meta.label} (of {owner.name})"
    return obj


# ---------------------------------------------------------------------------------------
# Enumerating the admin and classifying answers.


@dataclass(frozen=True)
class Page:
    label: str
    key: str  # "changelist", ..., "view:<url name>", "action:<name>"


def _custom_views(model_admin: admin.ModelAdmin) -> list[URLPattern]:
    meta = model_admin.model._meta
    standard = {f"{meta.app_label}_{meta.model_name}_{page}" for page in STANDARD_PAGES}
    return [
        pattern
        for pattern in model_admin.get_urls()
        if isinstance(pattern, URLPattern) and pattern.name and pattern.name not in standard
    ]


def _actions(model_admin: admin.ModelAdmin) -> list[str]:
    return [name for _, name, _ in model_admin._get_base_actions()]


def admin_pages() -> Iterator[tuple[admin.ModelAdmin, Page]]:
    for model, model_admin in admin.site._registry.items():
        label = model._meta.label_lower
        for page in STANDARD_PAGES:
            yield model_admin, Page(label, page)
        for pattern in _custom_views(model_admin):
            yield model_admin, Page(label, f"view:{pattern.name}")
        for name in _actions(model_admin):
            yield model_admin, Page(label, f"action:{name}")


def _url(world: World, model_admin: admin.ModelAdmin, key: str, obj: models.Model) -> str:
    meta = model_admin.model._meta
    prefix = f"admin:{meta.app_label}_{meta.model_name}"
    if key == "changelist" or key.startswith("action:"):
        return reverse(f"{prefix}_changelist")
    if key == "add":
        return reverse(f"{prefix}_add")
    if key in ("change", "delete", "history"):
        return reverse(f"{prefix}_{key}", args=[quote(obj.pk)])
    name = key.removeprefix("view:")
    (pattern,) = (p for p in _custom_views(model_admin) if p.name == name)
    kwargs: dict[str, Any] = {}
    for argument in pattern.pattern.converters:
        if argument == "user_id":
            kwargs[argument] = world.users[PA].pk
        elif argument == "group_id":
            kwargs[argument] = Group.objects.get(name=COMP).pk
        elif argument == "run_id":
            kwargs[argument] = _invoice_run(world)
        else:
            kwargs[argument] = obj.pk
    return reverse(f"admin:{name}", kwargs=kwargs)


def _invoice_run(world: World) -> str:
    """An invoice run's id (its row queued, as a started run's is)."""

    return billing_tasks.start_invoice_run(
        period=current_period(), issue=False, user_id=world.users[FIN].pk
    )


def _client(user: Any) -> Client:
    client = Client(raise_request_exception=False)
    client.force_login(user)
    return client


def _request(client: Client, url: str, key: str, obj: models.Model) -> HttpResponse:
    """GET the page, or POST the action on ``obj``; whatever it changes is rolled back so
    every cell of the matrix starts from the same world."""
    with transaction.atomic():
        if key.startswith("action:"):
            response = client.post(
                url,
                {"action": key.removeprefix("action:"), "_selected_action": [str(obj.pk)]},
            )
        else:
            response = client.get(url)
        transaction.set_rollback(True)
    return response


def _login_redirect(response: HttpResponse) -> bool:
    return response.status_code == 302 and "/admin/login/" in response["Location"]


def _action_ran(response: HttpResponse) -> bool:
    if response.status_code == 200:
        return "cl" not in (response.context or {})  # an intermediate page, not the list
    if response.status_code == 302 and not _login_redirect(response):
        # Only the messages this request added (earlier ones wait in the client's cookie).
        added = [str(m) for m in get_messages(response.wsgi_request)._queued_messages]
        return not any("No action selected" in m for m in added)
    return False


def _outcome(response: HttpResponse, key: str) -> str:
    """Allow, deny, or what the answer was instead (a 500, a redirect elsewhere)."""
    status = response.status_code
    if status == 403 or _login_redirect(response):
        return "deny"
    if key.startswith("action:"):
        if _action_ran(response):
            return "allow"
        return "deny" if status in (200, 302) else f"HTTP {status}"
    return "allow" if status == 200 else f"HTTP {status}"


def _offered_actions(client: Client, url: str) -> set[str]:
    response = client.get(url)
    if response.status_code != 200:
        return set()
    form = response.context["action_form"]
    return set() if form is None else {name for name, _ in form.fields["action"].choices}


# ---------------------------------------------------------------------------------------
# The tests.


def test_every_admin_page_and_action_has_a_row() -> None:
    missing = [
        f"{page.label} {page.key}"
        for _, page in admin_pages()
        if page.key not in EXPECTED.get(page.label, {})
    ]
    pages = {(p.label, p.key) for _, p in admin_pages()}
    stale = [
        f"{label} {key}"
        for label, row in EXPECTED.items()
        if _installed(label) is not None  # a model yet to arrive may have its row already
        for key in row
        if (label, key) not in pages
    ]
    assert not missing, f"place these admin pages in EXPECTED: {missing}"
    assert not stale, f"EXPECTED names pages the admin no longer has: {stale}"


@pytest.mark.parametrize("role", ROLES)
def test_every_admin_url_answers_as_the_table_says(world: World, role: str) -> None:
    client = _client(world.users[role])
    wrong = []
    offered: dict[str, set[str]] = {}
    for model_admin, page in admin_pages():
        if page.key not in EXPECTED.get(page.label, {}):
            continue  # reported by test_every_admin_page_and_action_has_a_row
        obj = world.objects[page.label]
        url = _url(world, model_admin, page.key, obj)
        expected = "allow" if role in EXPECTED[page.label][page.key] else "deny"
        got = _outcome(_request(client, url, page.key, obj), page.key)
        if page.key.startswith("action:"):
            if url not in offered:
                offered[url] = _offered_actions(client, url)
            is_offered = page.key.removeprefix("action:") in offered[url]
            if is_offered != (expected == "allow"):
                got = f"{got}, {'offered' if is_offered else 'not offered'}"
        if got != expected:
            wrong.append(f"{page.label} {page.key} ({url}): expected {expected}, got {got}")
    assert not wrong, f"{role}:\n" + "\n".join(wrong)


# Staff pages outside the model admins (custom views mounted under /admin/): who may open
# each. The dashboard shows commercial figures: ops and finance, not compliance or partners.
OTHER_PAGES: dict[str, frozenset[str]] = {
    "/admin/dashboard/": frozenset({SU, OPS, FIN}),
}


@pytest.mark.parametrize("role", ROLES)
def test_staff_pages_outside_the_model_admins_answer_as_the_table_says(
    world: World, role: str
) -> None:
    client = _client(world.users[role])
    wrong = []
    for url, allowed in OTHER_PAGES.items():
        expected = "allow" if role in allowed else "deny"
        got = _outcome(client.get(url), "view")
        if got != expected:
            wrong.append(f"{url}: expected {expected}, got {got}")
    assert not wrong, f"{role}:\n" + "\n".join(wrong)


def _filter_choices(response: HttpResponse) -> list[str]:
    changelist = response.context["cl"]
    return [
        str(choice["display"])
        for spec in changelist.filter_specs
        for choice in spec.choices(changelist)
    ]


def test_partner_staff_never_see_another_partners_rows_names_or_pages(world: World) -> None:
    client = _client(world.users[PA])
    b_secrets = [B_NAME, B_BANK_REFERENCE]
    leaks = []
    for model_admin, page in admin_pages():
        label = page.label
        if page.key.startswith("action:"):
            continue
        a_obj = world.objects[label]
        response = _request(client, _url(world, model_admin, page.key, a_obj), page.key, a_obj)
        if response.status_code == 200:
            html = response.content.decode(errors="replace")
            leaks += [f"{label} {page.key} shows {s!r}" for s in b_secrets if s in html]
        if page.key == "changelist" and response.status_code == 200:
            path = _partner_path(model_admin.model)
            if path is not None:
                shown = {
                    model_admin.partner_id_of(row) for row in response.context["cl"].result_list
                }
                if shown != {world.a.pk}:
                    leaks.append(f"{label} lists rows of partners {shown}")
            choices = _filter_choices(response)
            leaks += [f"{label} filter offers {c!r}" for c in choices if B_NAME in c]
        b_obj = world.b_objects.get(label)
        if b_obj is None or page.key in ("changelist", "add"):
            continue
        response = _request(client, _url(world, model_admin, page.key, b_obj), page.key, b_obj)
        if response.status_code not in (302, 403, 404) or (
            response.status_code == 302
            and response["Location"] not in ("/admin/", "")
            and not _login_redirect(response)
        ):
            leaks.append(f"{label} {page.key} of partner B answers {response.status_code}")
    assert not leaks, "\n".join(leaks)


def test_partner_filters_name_each_of_the_staffs_own_partners(world: World) -> None:
    """The filters the leak test searches are there (Django hides a filter with a single
    choice, so this user is granted two partners): A and C are offered, B is not."""
    c = PartnerFactory(name="Charlie Finance", slug="charlie-finance")
    schedule(c)
    lead = LeadBuilder().lead(product=ProductFactory(partner=c))
    post(lead, report("accepted", timezone.now() - timedelta(hours=1)))
    record_payment(
        partner_id=c.pk,
        currency="CNY",
        amount="10.00",
        received_at=timezone.now(),
        bank_reference="CHARLIE-1",
    )
    user = get_user_model().objects.create_user("two-partner-staff", is_staff=True)
    for partner in (world.a, c):
        grant_partner_access(user=user, partner=partner)
    client = _client(user)

    for url in ("/admin/marketplace/lead/", "/admin/billing/payment/", "/admin/billing/charge/"):
        response = client.get(url)
        assert response.status_code == 200, url
        choices = _filter_choices(response)
        assert {A_NAME, "Charlie Finance"} <= set(choices), (url, choices)
        assert B_NAME not in choices, (url, choices)


def _allocate(client: Client, payment: Payment, invoice: Invoice) -> HttpResponse:
    url = reverse("admin:billing_payment_allocate", args=[payment.pk])
    return client.post(url, {"invoice": str(invoice.pk), "amount": "5.00"})


def test_the_manual_allocation_needs_the_billing_change_permission(world: World) -> None:
    payment = Payment.objects.get(partner=world.a)
    invoice = Invoice.objects.filter(partner=world.a, number__startswith="INV").first()
    assert invoice is not None

    for role in (COMP, OPS, PA, NOBODY):
        assert _allocate(_client(world.users[role]), payment, invoice).status_code == 403, role
    assert not PaymentAllocation.objects.filter(payment=payment).exists()

    response = _allocate(_client(world.users[FIN]), payment, invoice)
    assert response.status_code == 302
    assert PaymentAllocation.objects.get(payment=payment).amount == Decimal("5.00")


def test_the_manual_allocation_of_an_unknown_payment_is_a_404(world: World) -> None:
    url = reverse("admin:billing_payment_allocate", args=["00000000-0000-0000-0000-000000000000"])
    assert _client(world.users[FIN]).get(url).status_code == 404


def test_partner_staff_granted_to_change_payments_still_cannot_allocate_or_see_others(
    world: World,
) -> None:
    """Even a partner staff user given billing's payment permissions by hand reaches only
    their own partner's payments, and never allocates."""
    from django.contrib.auth.models import Permission

    user = world.users[PA]
    user.user_permissions.add(
        *Permission.objects.filter(
            content_type__app_label="billing", codename__in=["view_payment", "change_payment"]
        )
    )
    client = _client(user)
    theirs = Payment.objects.get(partner=world.b)
    invoice = Invoice.objects.filter(partner=world.b, number__startswith="INV").first()
    assert invoice is not None

    listed = client.get("/admin/billing/payment/")
    assert {row.partner_id for row in listed.context["cl"].result_list} == {world.a.pk}
    assert _allocate(client, theirs, invoice).status_code in (403, 404)
    assert not PaymentAllocation.objects.filter(payment=theirs).exists()


def test_finance_records_a_payment_and_every_page_of_it_renders(world: World) -> None:
    client = _client(world.users[FIN])
    form = client.get(reverse("admin:billing_payment_add"))
    assert "allocate_now" in form.context["adminform"].form.fields
    management = {
        f"{inline.formset.prefix}-{name}": "0"
        for inline in form.context["inline_admin_formsets"]
        for name in ("TOTAL_FORMS", "INITIAL_FORMS")
    }

    response = client.post(
        reverse("admin:billing_payment_add"),
        {
            "partner": str(world.a.pk),
            "currency": "CNY",
            "amount": "3.00",
            "received_at_0": timezone.now().strftime("%Y-%m-%d"),
            "received_at_1": "09:00:00",
            "bank_reference": "ALPHA-BANK-REF-12",
            "note": "",
            "allocate_now": "on",
            **management,
        },
    )

    assert response.status_code == 302, response.context["adminform"].form.errors
    payment = Payment.objects.get(bank_reference="ALPHA-BANK-REF-12")
    assert PaymentAllocation.objects.filter(payment=payment).exists()  # oldest first
    page = client.get(reverse("admin:billing_payment_change", args=[payment.pk]))
    assert page.status_code == 200
    allocate_url = reverse("admin:billing_payment_allocate", args=[payment.pk])
    assert allocate_url in page.content.decode()
    assert client.get(allocate_url).status_code == 200
