"""The portal's forms: filters (GET, nothing personal in them) and actions (POST)."""

from __future__ import annotations

import uuid
from datetime import date, timedelta
from typing import Any

from django import forms
from django.contrib.auth import password_validation
from django.utils import timezone

from billing.models import ReturnReason
from marketplace.models import LeadStatus
from partners.currencies import Currency
from partners.models import KeyMode

MAX_RANGE_DAYS = 366


class LeadFilterForm(forms.Form):
    status = forms.ChoiceField(choices=[("", "Any status"), *LeadStatus.choices], required=False)
    created_from = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))
    created_to = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        start, end = data.get("created_from"), data.get("created_to")
        if start and end and start > end:
            self.add_error("created_to", "Must be on or after the start date.")
        return data


class DateRangeForm(forms.Form):
    since = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))
    until = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        today = timezone.now().date()
        until: date = data.get("until") or today
        since: date = data.get("since") or until - timedelta(days=29)
        if since > until:
            self.add_error("until", "Must be on or after the start date.")
        elif (until - since).days >= MAX_RANGE_DAYS:
            self.add_error("since", f"At most {MAX_RANGE_DAYS} days at a time.")
        data["since"], data["until"] = since, until
        return data


class ReturnForm(forms.Form):
    reason = forms.ChoiceField(choices=ReturnReason.choices, label="Reason code")
    # One id per rendered form: posting it twice is one return.
    form_id = forms.UUIDField(widget=forms.HiddenInput, initial=uuid.uuid4)


class KeyForm(forms.Form):
    name = forms.CharField(max_length=80, required=False, label="Name (what uses it)")
    mode = forms.ChoiceField(choices=KeyMode.choices, initial=KeyMode.SANDBOX)


class WebhookUrlForm(forms.Form):
    url = forms.URLField(max_length=500, label="Endpoint URL", assume_scheme="https")


class StatementForm(forms.Form):
    currency = forms.ChoiceField(choices=Currency.choices, required=False)


class InvitationAcceptForm(forms.Form):
    username = forms.CharField(max_length=150)
    password = forms.CharField(widget=forms.PasswordInput, strip=False)
    password_again = forms.CharField(widget=forms.PasswordInput, strip=False)

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if data.get("password") != data.get("password_again"):
            self.add_error("password_again", "The two passwords differ.")
        return data

    def password_help(self) -> list[str]:
        return list(password_validation.password_validators_help_texts())
