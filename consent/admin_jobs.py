"""Compliance actions in the admin: withdraw a consent, export an audit bundle, verify the
ledger. Thin views over ``consent.grants`` and ``consent.audit_jobs``.

Exports and verifications run in Celery; their page polls a small JSON status endpoint from
our own static script (CSP allows no inline script). A job's progress page, its status and
its file answer only the officer who started it (403 for anyone else, whatever their role).
"""

from __future__ import annotations

import uuid
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.auth.models import User
from django.core.exceptions import PermissionDenied
from django.http import (
    FileResponse,
    Http404,
    HttpRequest,
    HttpResponseRedirect,
    JsonResponse,
)
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.cache import add_never_cache_headers
from django.views.decorators.debug import sensitive_post_parameters

from consent import audit_jobs, compliance, grants, tasks
from consent.models import AuditJob, ConsentGrant, ConsentWithdrawal, Disclosure

START_PERMISSION = "consent.add_auditjob"
WITHDRAW_PERMISSION = "consent.add_consentwithdrawal"


class WithdrawForm(forms.Form):
    reason = forms.CharField(
        min_length=5,
        max_length=200,
        widget=forms.Textarea(attrs={"rows": 3, "cols": 60}),
        help_text="Why; kept with the withdrawal. Do not type the applicant's personal data.",
    )
    confirm = forms.BooleanField(
        label="I confirm: withdraw this consent now",
        help_text="Effective at once; it cannot be undone (the applicant must consent anew).",
    )


class ExportForm(forms.Form):
    subject = forms.UUIDField(required=False, label="Subject id")
    since = forms.DateTimeField(required=False, label="Or entries recorded from")
    until = forms.DateTimeField(required=False, label="until (exclusive)")

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if self.errors:
            return data
        has_range = data.get("since") is not None or data.get("until") is not None
        if data.get("subject") is not None and has_range:
            raise forms.ValidationError("Give a subject id or a time range, not both.")
        if data.get("subject") is None and not has_range:
            raise forms.ValidationError("Give a subject id or a time range.")
        if has_range and (data.get("since") is None or data.get("until") is None):
            raise forms.ValidationError("A time range needs both ends.")
        return data


def _user(request: HttpRequest) -> User:
    user = request.user
    assert isinstance(user, User)
    return user


def _page(
    model_admin: admin.ModelAdmin,
    request: HttpRequest,
    template: str,
    status: int = 200,
    **extra: Any,
) -> TemplateResponse:
    context = {
        **model_admin.admin_site.each_context(request),
        "opts": model_admin.model._meta,
        **extra,
    }
    response = TemplateResponse(request, template, context, status=status)
    add_never_cache_headers(response)
    return response


# --- Withdrawing ------------------------------------------------------------------------------


@sensitive_post_parameters("reason")
def withdraw(request: HttpRequest, model_admin: admin.ModelAdmin, grant_id: uuid.UUID) -> Any:
    if not request.user.has_perm(WITHDRAW_PERMISSION):
        raise PermissionDenied
    grant = ConsentGrant.objects.filter(pk=grant_id).select_related("text", "source").first()
    if grant is None:
        raise Http404("no such consent")
    history_url = reverse("admin:consent_subject_history", args=[grant.subject_id])
    already = ConsentWithdrawal.objects.filter(grant=grant).first()
    form = WithdrawForm(request.POST if request.method == "POST" else None)
    if request.method == "POST" and already is None and form.is_valid():
        user = _user(request)
        withdrawal = grants.withdraw(
            grant_id=grant.pk,
            channel="admin",
            reason=form.cleaned_data["reason"],
            acting_user={"id": str(user.pk), "username": user.get_username()},
        )
        model_admin.log_change(request, grant, f"Withdrew consent (withdrawal {withdrawal.pk})")
        asked = withdrawal.deletion_requests.count()
        model_admin.message_user(
            request,
            f"Withdrew consent {grant.pk}. {asked} partner(s) that received the data were "
            "asked to delete it.",
            messages.SUCCESS,
        )
        return HttpResponseRedirect(history_url)
    recipients = sorted(
        set(Disclosure.objects.filter(grant=grant).values_list("partner__name", flat=True))
    )
    return _page(
        model_admin,
        request,
        "admin/consent/consentgrant/withdraw.html",
        status=400 if request.method == "POST" and already is None else 200,
        title=f"Withdraw consent {grant.pk}",
        grant=grant,
        already=already,
        recipients=recipients,
        form=form,
        history_url=history_url,
    )


# --- Exports and verifications ----------------------------------------------------------------


def _require_start(request: HttpRequest) -> None:
    if not request.user.has_perm(START_PERMISSION):
        raise PermissionDenied


def _progress_url(job: AuditJob) -> str:
    return reverse("admin:consent_auditjob_progress", args=[job.pk])


def start_export(request: HttpRequest, model_admin: admin.ModelAdmin) -> Any:
    _require_start(request)
    code = 200
    if request.method == "POST":
        form = ExportForm(request.POST)
        if form.is_valid():
            try:
                job = tasks.start_export(
                    user=_user(request),
                    subject_id=form.cleaned_data["subject"],
                    since=form.cleaned_data["since"],
                    until=form.cleaned_data["until"],
                )
            except audit_jobs.JobRefused as exc:
                form.add_error(None, str(exc))
            else:
                return HttpResponseRedirect(_progress_url(job))
        code = 400
    else:
        form = ExportForm(initial={"subject": request.GET.get("subject", "")})
    return _page(
        model_admin,
        request,
        "admin/consent/auditjob/start.html",
        status=code,
        title="Export a consent audit bundle",
        form=form,
        kind="export",
        ledger_key=compliance.ledger_key(),
    )


def start_verify(request: HttpRequest, model_admin: admin.ModelAdmin) -> Any:
    _require_start(request)
    if request.method == "POST":
        job = tasks.start_verify(user=_user(request))
        return HttpResponseRedirect(_progress_url(job))
    return _page(
        model_admin,
        request,
        "admin/consent/auditjob/start.html",
        title="Verify the consent ledger",
        form=None,
        kind="verify",
        ledger_key=compliance.ledger_key(),
    )


def _own_job(request: HttpRequest, job_id: uuid.UUID) -> AuditJob:
    job = audit_jobs.job_for(job_id=job_id, user=_user(request))
    if job is None:
        if not AuditJob.objects.filter(pk=job_id).exists():
            raise Http404("no such job")
        raise PermissionDenied  # someone else's: its progress and file are theirs alone
    return job


def _status(job: AuditJob) -> dict[str, Any]:
    finished = job.state in (AuditJob.State.DONE, AuditJob.State.FAILED)
    return {
        "state": job.state,
        "done": job.done,
        "total": job.total,
        "finished": finished,
        "error": job.error,
    }


def progress(request: HttpRequest, model_admin: admin.ModelAdmin, job_id: uuid.UUID) -> Any:
    job = _own_job(request, job_id)
    if request.method == "POST" and "requeue" in request.POST:
        if tasks.requeue(job=job):
            model_admin.message_user(request, "Queued the job again.", messages.INFO)
        return HttpResponseRedirect(_progress_url(job))
    if request.method == "POST" and "again" in request.POST:
        _require_start(request)
        try:
            again = tasks.start_again(job=job, user=_user(request))
        except audit_jobs.JobRefused as exc:
            model_admin.message_user(request, str(exc), messages.ERROR)
            return HttpResponseRedirect(_progress_url(job))
        model_admin.message_user(request, "Started the job again.", messages.INFO)
        return HttpResponseRedirect(_progress_url(again))
    return _page(
        model_admin,
        request,
        "admin/consent/auditjob/progress.html",
        title=f"{job.get_kind_display().capitalize()} {job.pk}",
        job=job,
        job_status=_status(job),
        result=job.result,
        ledger_key=compliance.ledger_key(),
        status_url=reverse("admin:consent_auditjob_status", args=[job.pk]),
        download_url=reverse("admin:consent_auditjob_download", args=[job.pk])
        if job.kind == AuditJob.Kind.EXPORT and job.state == AuditJob.State.DONE
        else "",
    )


def status(request: HttpRequest, model_admin: admin.ModelAdmin, job_id: uuid.UUID) -> Any:
    job = _own_job(request, job_id)
    response = JsonResponse(_status(job))
    add_never_cache_headers(response)
    return response


def download(request: HttpRequest, model_admin: admin.ModelAdmin, job_id: uuid.UUID) -> Any:
    job = _own_job(request, job_id)
    path = audit_jobs.bundle_for(job_id=job.pk, user=_user(request))
    if path is None:
        raise Http404("the bundle is not ready")
    response = FileResponse(
        path.open("rb"),
        as_attachment=True,
        filename=f"consent-audit-{job.pk}.zip",
        content_type="application/zip",
    )
    add_never_cache_headers(response)
    return response
