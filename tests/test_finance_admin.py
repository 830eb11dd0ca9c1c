"""Finance's workplace in the admin: a period's invoices generated and issued in a worker
with a progress page, an invoice voided with a reason, a payment allocated, and each in
the row's history (who, what changed, why)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from billing.models import CreditNote, Invoice, InvoiceStatus, Payment
from billing.payments import record_payment
from partners import admin_audit, webhook_delivery
from partners.webhook_signing import create_endpoint
from tests.billing.builders import LeadBuilder, current_period, post, report, schedule
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
def finance(db: None) -> Any:
    return _staff("finance")


@pytest.fixture
def billed_partner(db: None) -> Any:
    """A partner with one accepted lead this month (one CPL charge)."""
    partner = PartnerFactory()
    schedule(partner)
    lead = LeadBuilder().lead(product=ProductFactory(partner=partner))
    post(lead, report("accepted", timezone.now() - timedelta(minutes=5)))
    return partner


def _messages(response: Any) -> list[str]:
    return [str(m) for m in response.context["messages"]] if response.context else []


def test_finance_generates_and_issues_a_period_from_the_admin_with_progress(
    finance: Any, billed_partner: Any, django_capture_on_commit_callbacks: Any
) -> None:
    client = _client(finance)
    listing = client.get(reverse("admin:billing_invoice_changelist")).content.decode()
    generate_url = reverse("admin:billing_invoice_generate")
    assert generate_url in listing

    period = str(current_period())
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(generate_url, {"period": period, "issue": "on"})
    assert response.status_code == 302
    run_page = client.get(response["Location"])
    assert run_page.status_code == 200
    run_id = response["Location"].rstrip("/").rsplit("/", 1)[-1]

    status = client.get(reverse("admin:billing_invoice_run_status", args=[run_id])).json()
    invoice = Invoice.objects.get(partner=billed_partner)
    assert invoice.status == InvoiceStatus.ISSUED
    assert status["stage"] == "done"
    assert status["issued"] == [invoice.number]
    assert status["done"] == status["total"] == 1
    assert status["refused"] == []
    assert admin_audit.history(invoice) == [
        f"Issued by the invoice run of {period}. status: draft → issued"
    ]
    assert invoice.number in run_page.content.decode() or status["issued"]


def test_a_run_that_cannot_start_says_why(finance: Any) -> None:
    client = _client(finance)
    response = client.post(reverse("admin:billing_invoice_generate"), {"period": "2026-13"})
    assert response.status_code == 200
    assert "period" in response.context["form"].errors
    future = (timezone.now() + timedelta(days=62)).strftime("%Y-%m")
    response = client.post(reverse("admin:billing_invoice_generate"), {"period": future})
    assert "has not started" in str(response.context["form"].errors["period"])


def test_an_unknown_run_is_a_404_and_others_cannot_see_runs(finance: Any) -> None:
    url = reverse("admin:billing_invoice_run_status", args=["nosuchrun"])
    assert _client(finance).get(url).status_code == 404
    assert _client(_staff("ops")).get(url).status_code == 403


def _issued(partner: Any) -> Invoice:
    from billing.invoicing import generate_invoices

    (invoice,) = generate_invoices(period=current_period(), issue=True)
    assert invoice.partner_id == partner.pk and invoice.status == InvoiceStatus.ISSUED
    return invoice


def test_finance_voids_an_invoice_with_a_reason(finance: Any, billed_partner: Any) -> None:
    invoice = _issued(billed_partner)
    client = _client(finance)
    url = reverse("admin:billing_invoice_changelist")
    chosen = {"action": "void", "_selected_action": [str(invoice.pk)]}

    confirm = client.post(url, chosen)
    assert confirm.status_code == 200 and "form" in confirm.context
    assert invoice.number in confirm.content.decode()
    no_reason = client.post(url, {**chosen, "confirmed": "yes", "reason": ""})
    assert no_reason.status_code == 200 and "reason" in no_reason.context["form"].errors
    invoice.refresh_from_db()
    assert invoice.status == InvoiceStatus.ISSUED

    done = client.post(
        url, {**chosen, "confirmed": "yes", "reason": "Wrong fee schedule applied"}, follow=True
    )
    invoice.refresh_from_db()
    assert invoice.status == InvoiceStatus.VOID
    note = CreditNote.objects.get(invoice=invoice)
    assert any(f"credit note {note.number}" in m for m in _messages(done))
    assert admin_audit.history(invoice) == [
        f"Voided; credit note {note.number}. status: issued → void. "
        "Reason: Wrong fee schedule applied"
    ]


def test_a_manual_allocation_is_in_the_payments_history(finance: Any, billed_partner: Any) -> None:
    invoice = _issued(billed_partner)
    payment, _ = record_payment(
        partner_id=billed_partner.pk,
        currency=invoice.currency,
        amount="100.00",
        received_at=timezone.now(),
        bank_reference="BANK-REF-1",
        allocate=False,
    )
    url = reverse("admin:billing_payment_allocate", args=[payment.pk])
    response = _client(finance).post(url, {"invoice": str(invoice.pk), "amount": "1.00"})
    assert response.status_code == 302
    (entry,) = admin_audit.history(Payment.objects.get(pk=payment.pk))
    assert entry == (
        f"Allocated {invoice.currency} 1.00 to {invoice.number}. unallocated: 100.00 → 99.00"
    )


def test_ops_replay_a_webhook_and_it_is_in_the_messages_history(db: None) -> None:
    partner = PartnerFactory()
    create_endpoint(partner=partner, url="http://127.0.0.1:9/hooks")
    (message,) = webhook_delivery.enqueue(
        partner_id=partner.pk, event_type="lead.delivered", data={"n": 1}, dedupe_key="replay:1"
    )
    response = _client(_staff("ops")).post(
        reverse("admin:partners_webhookmessage_changelist"),
        {"action": "replay", "_selected_action": [str(message.pk)]},
        follow=True,
    )
    assert any("queued again" in m for m in _messages(response))
    (entry,) = admin_audit.history(message)
    assert entry.startswith("Replayed. status: ")
