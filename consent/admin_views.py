"""Compliance pages in the admin: find an applicant, see the history, reveal data on purpose.

What staff type (a phone or ID number, a reason) travels only in POST bodies, never in a
URL, and is marked sensitive so Django's error reports leave it out. Decrypted data is shown
once, in the answer to the reveal POST, with ``Cache-Control: no-store``.
"""

from __future__ import annotations

import uuid
from typing import Any

from django import forms
from django.contrib import admin
from django.contrib.auth.models import User
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.utils.cache import add_never_cache_headers
from django.views.decorators.debug import sensitive_post_parameters

from consent import compliance, gate
from consent.models import PII_FIELDS, Subject

FIELD_CHOICES = [(name, name.replace("_", " ")) for name in PII_FIELDS]


class FindApplicantForm(forms.Form):
    phone = forms.CharField(max_length=40, required=False, label="Phone number")
    national_id = forms.CharField(max_length=40, required=False, label="ID number")
    reference = forms.UUIDField(required=False, label="Or an id")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        kinds = compliance.reference_kinds()
        self.fields["reference"].help_text = "A " + " or ".join(kinds) + " id (a UUID)."

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        number = data.get("phone", "").strip() or data.get("national_id", "").strip()
        if "reference" in self.errors:
            return data
        if number and data.get("reference"):
            raise forms.ValidationError("Search by a number or by an id, not both at once.")
        if not number and not data.get("reference"):
            raise forms.ValidationError("Type a phone number or an ID number, or give an id.")
        return data


class RevealForm(forms.Form):
    personal_fields = forms.MultipleChoiceField(
        choices=FIELD_CHOICES, widget=forms.CheckboxSelectMultiple, label="Fields to reveal"
    )
    reason = forms.CharField(
        min_length=gate.MIN_REASON_LENGTH,
        max_length=500,
        widget=forms.Textarea(attrs={"rows": 3, "cols": 60}),
        help_text="Why you need to see this data (recorded, with your name and the time).",
    )


def _context(model_admin: admin.ModelAdmin, request: HttpRequest, **extra: Any) -> dict[str, Any]:
    return {
        **model_admin.admin_site.each_context(request),
        "opts": model_admin.model._meta,
        "can_reveal": request.user.has_perm(gate.REVEAL_PERMISSION),
        "can_withdraw": request.user.has_perm("consent.add_consentwithdrawal"),
        "can_export": request.user.has_perm("consent.add_auditjob"),
        "ledger_key": compliance.ledger_key(),
        **extra,
    }


def _private(response: TemplateResponse) -> TemplateResponse:
    add_never_cache_headers(response)  # also no-store: never kept by a browser or proxy
    return response


def _require_view(model_admin: admin.ModelAdmin, request: HttpRequest) -> None:
    if not model_admin.has_view_permission(request):
        raise PermissionDenied


@sensitive_post_parameters("phone", "national_id")
def find_applicant(request: HttpRequest, model_admin: admin.ModelAdmin) -> HttpResponse:
    _require_view(model_admin, request)
    histories: list[compliance.SubjectHistory] | None = None
    matches: list[compliance.ReferenceMatch] = []
    reference: uuid.UUID | None = None
    if request.method == "POST":
        form = FindApplicantForm(request.POST)
        if form.is_valid():
            reference = form.cleaned_data["reference"]
            if reference is not None:
                matches = compliance.find_by_reference(reference=reference)
                ids = list(dict.fromkeys(match.subject_id for match in matches))
            else:
                ids = compliance.find_subjects(
                    phone=form.cleaned_data["phone"],
                    national_id=form.cleaned_data["national_id"],
                )
            histories = [compliance.subject_history(subject_id=pk) for pk in ids]
            form = FindApplicantForm()  # the typed number is not echoed back into the page
    else:
        form = FindApplicantForm()
    return _private(
        TemplateResponse(
            request,
            "admin/consent/subject/find.html",
            _context(
                model_admin,
                request,
                title="Find an applicant",
                form=form,
                histories=histories,
                # An id is no personal data: the page says which record it named.
                reference=reference,
                matches=matches,
                reference_kinds=" or ".join(compliance.reference_kinds()),
                reveal_form=RevealForm(),
            ),
        )
    )


def subject_history(
    request: HttpRequest, model_admin: admin.ModelAdmin, subject_id: uuid.UUID
) -> HttpResponse:
    _require_view(model_admin, request)
    try:
        history = compliance.subject_history(subject_id=subject_id)
    except Subject.DoesNotExist:
        raise Http404("no such subject") from None
    return _private(
        TemplateResponse(
            request,
            "admin/consent/subject/history.html",
            _context(
                model_admin,
                request,
                title=f"Consent history of subject {subject_id}",
                histories=[history],
                reveal_form=RevealForm(),
            ),
        )
    )


@sensitive_post_parameters("reason")
def reveal(request: HttpRequest, model_admin: admin.ModelAdmin, subject_id: uuid.UUID) -> Any:
    if not request.user.has_perm(gate.REVEAL_PERMISSION):
        raise PermissionDenied
    subject = Subject.objects.filter(pk=subject_id).only("id", "erased_at").first()
    if subject is None:
        raise Http404("no such subject")
    revealed: dict[str, str] | None = None
    error = ""
    status = 200
    form = RevealForm(request.POST if request.method == "POST" else None)
    if request.method == "POST":
        if form.is_valid():
            user = request.user
            assert isinstance(user, User)
            try:
                revealed = gate.reveal(
                    subject_id=subject.pk,
                    user=user,
                    fields=tuple(form.cleaned_data["personal_fields"]),
                    reason=form.cleaned_data["reason"],
                )
            except gate.RevealRefused as exc:
                error, status = str(exc), 400
        else:
            status = 400
    labels = dict(FIELD_CHOICES)
    return _private(
        TemplateResponse(
            request,
            "admin/consent/subject/reveal.html",
            _context(
                model_admin,
                request,
                title=f"Reveal personal data of subject {subject.pk}",
                subject=subject,
                form=RevealForm() if revealed is not None else form,
                error=error,
                revealed=[(labels[k], v) for k, v in revealed.items()] if revealed else None,
            ),
            status=status,
        )
    )
