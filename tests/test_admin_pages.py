"""Every admin page an operator uses renders after real traffic, with no personal data on
list pages."""

from __future__ import annotations

import pytest
from django.contrib import admin
from django.contrib.admin.utils import quote
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse

from tests.factories import referral_payload


@pytest.fixture
def staff_client(db: None) -> Client:
    user = get_user_model().objects.create_superuser("ops", "ops@example.invalid", "pw-123456!")
    client = Client()
    client.force_login(user)
    return client


def test_admin_lists_and_details_render_without_personal_data(
    staff_client, source_client, simulator_factory, django_capture_on_commit_callbacks
):
    simulator_factory()
    payload = referral_payload()
    with django_capture_on_commit_callbacks(execute=True):
        assert source_client.post("/api/v1/referrals", payload, format="json").status_code == 201
    secrets = [payload["applicant"][k] for k in ("full_name", "national_id", "phone", "address")]
    checked = 0
    for model, model_admin in admin.site._registry.items():
        meta = model._meta
        url = reverse(f"admin:{meta.app_label}_{meta.model_name}_changelist")
        response = staff_client.get(url)
        assert response.status_code == 200, url
        html = response.content.decode()
        assert not any(secret in html for secret in secrets), url
        obj = model_admin.get_queryset(response.wsgi_request).first()
        if obj is not None:
            detail = staff_client.get(
                reverse(f"admin:{meta.app_label}_{meta.model_name}_change", args=[quote(obj.pk)])
            )
            assert detail.status_code == 200, meta.label
            assert not any(secret in detail.content.decode() for secret in secrets), meta.label
            checked += 1
    assert checked >= 10  # referral, lead, attempt, grant, disclosure, ledger, ...
