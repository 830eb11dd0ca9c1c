"""Finance enters an exchange rate in the admin (with its source); fees that waited for it
("needs rate") are booked at once, and the rate can be neither edited nor deleted."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse

from billing.models import Charge, ExchangeRate, PendingFee
from tests.billing.builders import LeadBuilder, post, report, schedule
from tests.factories import ProductFactory


@pytest.fixture
def admin_client_(db: None) -> Client:
    user = get_user_model().objects.create_superuser("fin", "fin@example.com", "pw-12345678")
    client = Client()
    client.force_login(user)
    return client


def test_entering_a_rate_books_the_fees_that_waited_for_it(
    admin_client_: Client, django_capture_on_commit_callbacks: object
) -> None:
    product = ProductFactory()
    schedule(product.partner, currency="USD", cpf_rate=Decimal("0.0300"), cpf_min=Decimal("5"))
    lead = LeadBuilder().lead(product=product)
    post(lead, report("approved", lead.delivered_at + timedelta(hours=1)))
    post(lead, report("funded", lead.delivered_at + timedelta(hours=2)))
    assert PendingFee.objects.filter(lead=lead, resolved_at__isnull=True).count() == 1
    listing = admin_client_.get(reverse("admin:billing_pendingfee_changelist"))
    assert listing.status_code == 200 and b"CNY" in listing.content

    with django_capture_on_commit_callbacks(execute=True):  # type: ignore[operator]
        response = admin_client_.post(
            reverse("admin:billing_exchangerate_add"),
            {
                "from_currency": "CNY",
                "to_currency": "USD",
                "rate": "0.14",
                "effective_from_0": (lead.delivered_at - timedelta(days=1)).strftime("%Y-%m-%d"),
                "effective_from_1": "00:00:00",
                "source": "PBOC central parity",
            },
            follow=True,
        )

    assert response.status_code == 200
    assert b"1 fee(s) waiting" in response.content
    rate = ExchangeRate.objects.get()
    assert rate.entered_by is not None and rate.source == "PBOC central parity"
    cpf = Charge.objects.get(lead=lead, kind="cpf")
    assert (cpf.amount, cpf.currency, cpf.exchange_rate_id) == (Decimal("63.00"), "USD", rate.pk)
    assert not PendingFee.objects.filter(resolved_at__isnull=True).exists()
    change = admin_client_.get(reverse("admin:billing_exchangerate_change", args=[rate.pk]))
    assert b'name="rate"' not in change.content  # read-only: a correction is a new rate
    delete = admin_client_.post(
        reverse("admin:billing_exchangerate_delete", args=[rate.pk]), {"post": "yes"}
    )
    assert delete.status_code == 403
    assert ExchangeRate.objects.filter(pk=rate.pk).exists()


def test_a_rate_without_a_source_or_between_one_currency_is_refused(
    admin_client_: Client,
) -> None:
    response = admin_client_.post(
        reverse("admin:billing_exchangerate_add"),
        {
            "from_currency": "CNY",
            "to_currency": "CNY",
            "rate": "-1",
            "effective_from_0": "2026-11-01",
            "effective_from_1": "00:00:00",
            "source": "",
        },
    )

    assert response.status_code == 200  # the form again, with its errors
    assert not ExchangeRate.objects.exists()
    assert b"errorlist" in response.content


def test_a_rate_that_would_change_a_booked_conversion_is_a_form_error(
    admin_client_: Client,
) -> None:
    from billing.fx import record_rate

    product = ProductFactory()
    schedule(product.partner, currency="USD", cpf_rate=Decimal("0.0300"), cpf_min=Decimal("5"))
    lead = LeadBuilder().lead(product=product)
    record_rate(
        from_currency="CNY",
        to_currency="USD",
        rate="0.14",
        effective_from=lead.delivered_at - timedelta(days=10),
        source="PBOC",
    )
    post(lead, report("approved", lead.delivered_at + timedelta(hours=1)))
    post(lead, report("funded", lead.delivered_at + timedelta(hours=2)))

    response = admin_client_.post(
        reverse("admin:billing_exchangerate_add"),
        {
            "from_currency": "CNY",
            "to_currency": "USD",
            "rate": "0.15",
            "effective_from_0": lead.delivered_at.strftime("%Y-%m-%d"),
            "effective_from_1": lead.delivered_at.strftime("%H:%M:%S"),
            "source": "PBOC, revised",
        },
    )

    assert response.status_code == 200  # the form again, not a server error
    assert b"already converted" in response.content
    assert ExchangeRate.objects.count() == 1
