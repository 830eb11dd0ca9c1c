"""Ops's workplace in the admin: pausing and resuming a partner with a reason, deciding a
product change request from its own page with a note for the partner, partner staff
access granted and revoked, set-valued product terms edited as checkboxes, and each of
these in the row's history with old and new values and the reason."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.test import Client
from django.urls import reverse
from guardian.shortcuts import get_perms

from partners import admin_audit, holds, products
from partners.admin_fields import ChoiceSetField
from partners.models import ChangeRequestStatus, HoldReason, Partner, PartnerStatus, Product
from tests.factories import PartnerFactory, ProductFactory


def _staff(role: str) -> Any:
    user = get_user_model().objects.create_user(role, is_staff=True)
    user.groups.add(Group.objects.get(name=role))
    return user


def _client(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def ops(db: None) -> Any:
    return _staff("ops")


def _messages(response: Any) -> list[str]:
    return [str(m) for m in response.context["messages"]] if response.context else []


def test_ops_pause_a_partner_with_a_reason_and_resume_it(ops: Any) -> None:
    partner = PartnerFactory(status=PartnerStatus.LIVE)
    client = _client(ops)
    page = client.get(reverse("admin:partners_partner_change", args=[partner.pk]))
    pause_url = reverse("admin:partners_partner_pause", args=[partner.pk])
    assert pause_url in page.content.decode()

    refused = client.post(pause_url, {"reason": ""})
    assert refused.status_code == 200
    assert "reason" in refused.context["form"].errors
    assert not holds.is_held(partner_id=partner.pk, reason=HoldReason.OPS_PAUSE)

    done = client.post(pause_url, {"reason": "Post endpoint failing since 09:00"}, follow=True)
    assert holds.is_held(partner_id=partner.pk, reason=HoldReason.OPS_PAUSE)
    assert any("is paused" in m for m in _messages(done))
    resume_url = reverse("admin:partners_partner_resume", args=[partner.pk])
    assert resume_url in done.content.decode()  # the page now offers resuming

    client.post(resume_url, {"reason": "Endpoint fixed, checked with their team"})
    assert not holds.is_held(partner_id=partner.pk, reason=HoldReason.OPS_PAUSE)
    assert admin_audit.history(partner) == [
        "Paused routing (ops hold). routing: running → paused by ops. "
        "Reason: Post endpoint failing since 09:00",
        "Resumed routing (ops hold lifted). routing: paused by ops → running. "
        "Reason: Endpoint fixed, checked with their team",
    ]
    history = client.get(reverse("admin:partners_partner_history", args=[partner.pk]))
    assert "Post endpoint failing since 09:00" in history.content.decode()
    assert "ops" in history.content.decode()  # who


def test_finance_and_partner_staff_cannot_pause(db: None) -> None:
    partner = PartnerFactory()
    url = reverse("admin:partners_partner_pause", args=[partner.pk])
    assert _client(_staff("finance")).post(url, {"reason": "not my job"}).status_code == 403
    assert not holds.is_held(partner_id=partner.pk)


def test_a_partner_change_records_old_and_new_values(ops: Any) -> None:
    partner = PartnerFactory(status=PartnerStatus.SANDBOX, monthly_budget=None)
    client = _client(ops)
    url = reverse("admin:partners_partner_change", args=[partner.pk])
    form = client.get(url).context["adminform"].form
    data = {
        name: ("" if value is None else value)
        for name, value in form.initial.items()
        if name in form.fields and not form.fields[name].disabled
    }
    data.update({"status": PartnerStatus.LIVE, "monthly_budget": "50000.00"})
    for inline in client.get(url).context["inline_admin_formsets"]:
        prefix = inline.formset.prefix
        data[f"{prefix}-TOTAL_FORMS"] = str(inline.formset.total_form_count())
        data[f"{prefix}-INITIAL_FORMS"] = str(inline.formset.initial_form_count())
        for i, sub in enumerate(inline.formset.forms):
            data[f"{prefix}-{i}-id"] = str(sub.instance.pk)
            data[f"{prefix}-{i}-partner"] = str(partner.pk)
            for name, value in sub.initial.items():
                data.setdefault(f"{prefix}-{i}-{name}", value)
    response = client.post(url, data)
    assert response.status_code == 302, response.context["adminform"].form.errors
    (message,) = admin_audit.history(partner)
    assert "Status: sandbox → live" in message
    assert "Monthly budget: (empty) → 50000.00" in message


def test_ops_reject_a_change_request_with_a_note_the_partner_sees(ops: Any) -> None:
    product = ProductFactory(dedupe_days=30)
    change = products.propose_change(product=product, changes={"dedupe_days": 3})
    client = _client(ops)
    page = client.get(reverse("admin:partners_productchangerequest_change", args=[change.pk]))
    decide_url = reverse("admin:partners_productchangerequest_decide", args=[change.pk])
    assert decide_url in page.content.decode()

    no_note = client.post(decide_url, {"decision": "reject", "note": ""})
    assert "note" in no_note.context["form"].errors
    change.refresh_from_db()
    assert change.status == ChangeRequestStatus.PENDING

    client.post(decide_url, {"decision": "reject", "note": "Three days is below our rule"})
    change.refresh_from_db()
    assert change.status == ChangeRequestStatus.REJECTED
    assert change.decision_note == "Three days is below our rule"
    assert change.decided_by == ops
    product.refresh_from_db()
    assert product.dedupe_days == 30
    assert admin_audit.history(change) == [
        "Decided: Rejected. status: Pending review → Rejected. Reason: Three days is below our rule"
    ]
    # Decided: the page no longer decides again.
    again = client.post(decide_url, {"decision": "approve", "note": ""})
    assert again.status_code == 302
    change.refresh_from_db()
    assert change.status == ChangeRequestStatus.REJECTED


def test_ops_approve_a_change_request_and_the_product_history_has_the_values(ops: Any) -> None:
    product = ProductFactory(dedupe_days=30)
    change = products.propose_change(product=product, changes={"dedupe_days": 14})
    url = reverse("admin:partners_productchangerequest_decide", args=[change.pk])
    response = _client(ops).post(url, {"decision": "approve", "note": "Fine by us"}, follow=True)
    assert any("applied to the product" in m for m in _messages(response))
    product.refresh_from_db()
    assert product.dedupe_days == 14
    (entry,) = admin_audit.history(product)
    assert "dedupe_days: 30 → 14" in entry and "Reason: Fine by us" in entry


def test_ops_grant_and_revoke_partner_staff_access(ops: Any) -> None:
    partner = PartnerFactory()
    person = get_user_model().objects.create_user("lender-analyst", is_staff=False)
    url = reverse("admin:partners_partner_staff", args=[partner.pk])
    client = _client(ops)
    form_users = client.get(url).context["form"].fields["user"].queryset
    assert person in form_users and ops not in form_users  # operators are never offered

    client.post(url, {"user": person.pk, "access": "manage", "reason": "New analyst at Alpha"})
    assert set(get_perms(person, partner)) == {"view_partner", "change_partner"}
    person.refresh_from_db()
    assert person.is_staff
    listed = client.get(url).content.decode()
    assert "lender-analyst" in listed

    client.post(url, {"user": person.pk, "access": "revoke", "reason": "Left the company"})
    assert get_perms(person, partner) == []
    assert admin_audit.history(partner) == [
        "Partner staff access of lender-analyst. access: none → manage. "
        "Reason: New analyst at Alpha",
        "Partner staff access of lender-analyst. access: manage → none. Reason: Left the company",
    ]


def _product_post(client: Client, product: Product, **changes: Any) -> Any:
    url = reverse("admin:partners_product_change", args=[product.pk])
    page = client.get(url)
    form = page.context["adminform"].form
    data: dict[str, Any] = {}
    for name, field in form.fields.items():
        if field.disabled:
            continue
        value = form.initial.get(name)
        if isinstance(field, ChoiceSetField):
            data[name] = field.prepare_value(value) or []
        elif value is None:
            data[name] = ""
        elif isinstance(value, bool):
            if value:
                data[name] = "on"
        elif hasattr(value, "pk"):
            data[name] = str(value.pk)
        else:
            data[name] = str(value)
    data.update(changes)
    return client.post(url, data)


def test_set_valued_terms_are_checkboxes_and_round_trip(ops: Any) -> None:
    product = ProductFactory(
        risk_tiers=["R3", "R4"], regions=["CN-GD", "XX-OLD"], channels=[], purposes=[]
    )
    client = _client(ops)
    page = client.get(reverse("admin:partners_product_change", args=[product.pk]))
    html = page.content.decode()
    assert 'type="checkbox" name="risk_tiers" value="R3"' in html
    assert 'name="regions" value="XX-OLD"' in html  # an unknown value is shown, not lost
    form = page.context["adminform"].form
    assert isinstance(form.fields["risk_tiers"].widget, type(ChoiceSetField(choices=[]).widget))

    # Unchanged: saved as it was (the old value kept), no history of a change to regions.
    response = _product_post(client, product)
    assert response.status_code == 302, response.context["adminform"].form.errors
    product.refresh_from_db()
    assert product.regions == ["CN-GD", "XX-OLD"]
    assert product.risk_tiers == ["R3", "R4"]

    response = _product_post(
        client, product, risk_tiers=["R5", "R2"], channels=["web", "app"], regions=["CN-GD"]
    )
    assert response.status_code == 302, response.context["adminform"].form.errors
    product.refresh_from_db()
    assert product.risk_tiers == ["R2", "R5"]  # the vocabulary's order
    assert product.channels == ["app", "web"]
    assert product.regions == ["CN-GD"]
    (entry,) = [m for m in admin_audit.history(product) if m.startswith("Changed")]
    assert "['R3', 'R4'] → ['R2', 'R5']" in entry

    for bad in ({"risk_tiers": []}, {"risk_tiers": ["R9"]}, {"channels": ["carrier pigeon"]}):
        refused = _product_post(client, product, **bad)
        assert refused.status_code == 200, bad
        assert set(bad) <= set(refused.context["adminform"].form.errors), bad
    product.refresh_from_db()
    assert product.risk_tiers == ["R2", "R5"]
    assert product.min_amount > Decimal(0)


def test_partner_list_shows_no_contact_details(ops: Any) -> None:
    PartnerFactory(contact_name="Zhang Wei", contact_email="zhang.wei@lender.example")
    html = _client(ops).get(reverse("admin:partners_partner_changelist")).content.decode()
    assert "zhang.wei@lender.example" not in html and "Zhang Wei" not in html


def test_partner_list_is_newest_first(ops: Any) -> None:
    older, newer = PartnerFactory(name="Aardvark Credit"), PartnerFactory(name="Zebra Loans")
    Partner.objects.filter(pk=older.pk).update(created_at="2025-01-01T00:00:00Z")
    rows = _client(ops).get(reverse("admin:partners_partner_changelist")).context["cl"].result_list
    assert [p.pk for p in rows][:2] == [newer.pk, older.pk]
