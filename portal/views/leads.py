"""The partner's leads (anonymised attributes and outcomes), CSV export, returns and funnel.

Only what the list API shows of a lead appears here: the loan asked for, risk tier, region,
age and income bands, and the outcomes. The applicant's personal data stays in the post the
partner received; the portal never reads it (no disclosure happens here)."""

from __future__ import annotations

import csv
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, time, timedelta
from typing import Any

from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.views.decorators.http import require_http_methods, require_POST

from billing.models import ReturnReason, ReturnReview
from marketplace import resend
from marketplace.bands import age_band_label, income_band_label
from marketplace.events import EventError
from marketplace.models import REPORTABLE_STATUSES, Lead, LeadEvent, LeadStatus
from portal import actions, selectors, stats
from portal.access import portal_of, portal_view
from portal.forms import DateRangeForm, LeadFilterForm, ReturnForm
from portal.views.common import page_of, query_without_page, show

CSV_COLUMNS = [
    "lead_id",
    "created_at",
    "delivered_at",
    "status",
    "mode",
    "product",
    "delivery_mode",
    "loan_amount",
    "loan_currency",
    "term_months",
    "purpose",
    "risk_tier",
    "region",
    "age_band",
    "income_band",
    "bid_amount",
    "bid_currency",
    "approved_amount",
    "approved_apr",
    "funded_principal",
    "outcome_currency",
    "partner_reference",
]


def _filtered(request: HttpRequest) -> tuple[LeadFilterForm, QuerySet[Lead]]:
    portal = portal_of(request)
    form = LeadFilterForm(request.GET or None)
    queryset = selectors.leads(portal).order_by("-created_at", "-id")
    if form.is_valid():
        data = form.cleaned_data
        if data.get("status"):
            queryset = queryset.filter(status=data["status"])
        if data.get("created_from"):
            start = datetime.combine(data["created_from"], time.min, tzinfo=UTC)
            queryset = queryset.filter(created_at__gte=start)
        if data.get("created_to"):
            end = datetime.combine(data["created_to"] + timedelta(days=1), time.min, tzinfo=UTC)
            queryset = queryset.filter(created_at__lt=end)
    elif request.GET:
        queryset = queryset.none()
    return form, queryset


def attributes(lead: Lead) -> dict[str, Any]:
    """A lead's anonymised attributes, as the partner API's lead list gives them."""
    referral = lead.referral
    return {
        "amount": referral.amount,
        "currency": referral.currency,
        "term_months": referral.term_months,
        "purpose": referral.purpose,
        "risk_tier": referral.risk_tier,
        "region": referral.region,
        "age_band": age_band_label(referral.age),
        "income_band": income_band_label(referral.income_band_floor),
    }


@require_http_methods(["GET"])
@portal_view()
def lead_list(request: HttpRequest) -> HttpResponse:
    form, queryset = _filtered(request)
    page = page_of(request, queryset)
    rows = [(lead, attributes(lead)) for lead in page.object_list]
    return show(
        request,
        "leads.html",
        {"form": form, "page": page, "rows": rows, "query": query_without_page(request)},
        status=200 if form.is_valid() or not request.GET else 400,
    )


class _Echo:
    def write(self, value: str) -> str:
        return value


def _csv_rows(queryset: QuerySet[Lead]) -> Iterator[str]:
    writer = csv.writer(_Echo())
    yield writer.writerow(CSV_COLUMNS)
    for lead in queryset.iterator(chunk_size=500):
        a = attributes(lead)
        yield writer.writerow(
            [
                lead.pk,
                lead.created_at.isoformat(),
                lead.delivered_at.isoformat() if lead.delivered_at else "",
                lead.status,
                "sandbox" if lead.is_sandbox else "live",
                lead.product.name,
                lead.delivery_mode,
                a["amount"],
                a["currency"],
                a["term_months"],
                a["purpose"],
                a["risk_tier"],
                a["region"],
                a["age_band"],
                a["income_band"],
                "" if lead.bid_amount is None else lead.bid_amount,
                lead.bid_currency,
                "" if lead.approved_amount is None else lead.approved_amount,
                "" if lead.approved_apr is None else lead.approved_apr,
                "" if lead.funded_principal is None else lead.funded_principal,
                lead.outcome_currency,
                lead.partner_reference,
            ]
        )


@require_http_methods(["GET"])
@portal_view()
def lead_csv(request: HttpRequest) -> HttpResponse | StreamingHttpResponse:
    form, queryset = _filtered(request)
    if request.GET and not form.is_valid():
        return show(request, "leads.html", {"form": form, "page": None, "rows": []}, status=400)
    portal = portal_of(request)
    response = StreamingHttpResponse(_csv_rows(queryset), content_type="text/csv; charset=utf-8")
    filename = f"leads-{portal.partner.slug}-{portal.mode}.csv"
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


def _return_statuses(events: list[LeadEvent]) -> dict[uuid.UUID, ReturnReview]:
    return {
        review.event_id: review
        for review in ReturnReview.objects.filter(event_id__in=[e.pk for e in events])
    }


def _reversed(event: LeadEvent) -> bool:
    # A reverse one-to-one: missing is an AttributeError (RelatedObjectDoesNotExist).
    return getattr(event, "reversed_by", None) is not None


def return_status(event: LeadEvent, review: ReturnReview | None, *, sandbox: bool) -> str:
    """Where a return stands, in the partner's words."""
    if _reversed(event):
        return "Reversed by you"
    if sandbox:
        return "Recorded (sandbox: nothing is billed)"
    if review is None:
        return "Accepted: credited"
    return {
        "pending": "Under review by our finance team",
        "approved": "Approved: credited",
        "rejected": "Rejected",
    }.get(review.status, review.status)


@require_http_methods(["GET"])
@portal_view()
def lead_detail(request: HttpRequest, lead_id: uuid.UUID) -> HttpResponse:
    portal = portal_of(request)
    lead = get_object_or_404(selectors.leads(portal), pk=lead_id)
    return _lead_page(request, lead, ReturnForm())


def _lead_page(
    request: HttpRequest,
    lead: Lead,
    form: ReturnForm,
    status: int = 200,
    resend_error: str = "",
) -> HttpResponse:
    portal = portal_of(request)
    events = list(
        selectors.lead_events(portal)
        .filter(lead=lead)
        .select_related("reverses", "reversed_by")
        .order_by("occurred_at", "received_at")
    )
    reviews = _return_statuses(events)
    returns = [
        (
            event,
            reviews.get(event.pk),
            return_status(event, reviews.get(event.pk), sandbox=portal.sandbox),
        )
        for event in events
        if event.type == "returned"
    ]
    # A lead is returned once: another return needs the standing one reversed (by API).
    returned = any(not _reversed(event) for event, _, _ in returns)
    can_return = (
        lead.delivered_at is not None and lead.status in REPORTABLE_STATUSES and not returned
    )
    context = {
        "lead": lead,
        "attrs": attributes(lead),
        "events": events,
        "returns": returns,
        "attempts": selectors.delivery_attempts(portal).filter(lead=lead)[:20],
        "form": form,
        "can_return": can_return and portal.can_manage,
        # Only a lead whose posts failed is offered a re-send, or told why it cannot be.
        "resend_refusal": resend.refusal(lead)
        if lead.status == LeadStatus.DELIVERY_FAILED
        else None,
        "resend_error": resend_error,
    }
    return show(request, "lead_detail.html", context, status=status)


@require_POST
@portal_view(manage=True)
def lead_return(request: HttpRequest, lead_id: uuid.UUID) -> HttpResponse:
    portal = portal_of(request)
    lead = get_object_or_404(selectors.leads(portal), pk=lead_id)
    form = ReturnForm(request.POST)
    if not form.is_valid():
        return _lead_page(request, lead, form, status=400)
    try:
        actions.request_return(
            portal=portal,
            lead_id=lead.pk,
            reason=form.cleaned_data["reason"],
            form_id=form.cleaned_data["form_id"],
        )
    except Lead.DoesNotExist:
        raise Http404 from None
    except EventError as exc:
        form.add_error("reason" if exc.field == "reason" else None, str(exc))
        return _lead_page(request, lead, form, status=422)
    return redirect("portal:lead_detail", lead_id=lead.pk)


@require_POST
@portal_view(manage=True)
def lead_resend(request: HttpRequest, lead_id: uuid.UUID) -> HttpResponse:
    """Send a failed lead post again (``marketplace.resend``): another partner's lead, or
    one of the other mode, is a 404; one that may not be sent again is a 409 saying why."""
    portal = portal_of(request)
    lead = get_object_or_404(selectors.leads(portal), pk=lead_id)
    try:
        actions.resend_lead(portal=portal, lead_id=lead.pk)
    except Lead.DoesNotExist:
        raise Http404 from None
    except resend.ResendRefused as exc:
        return _lead_page(request, lead, ReturnForm(), status=409, resend_error=str(exc))
    return redirect("portal:lead_detail", lead_id=lead.pk)


@require_http_methods(["GET"])
@portal_view()
def return_list(request: HttpRequest) -> HttpResponse:
    portal = portal_of(request)
    page = page_of(request, selectors.returns(portal))
    events = list(page.object_list)
    reviews = _return_statuses(events)
    rows = [
        (
            event,
            reviews.get(event.pk),
            return_status(event, reviews.get(event.pk), sandbox=portal.sandbox),
        )
        for event in events
    ]
    reasons = dict(ReturnReason.choices)
    return show(
        request,
        "returns.html",
        {"page": page, "rows": rows, "reasons": reasons, "query": query_without_page(request)},
    )


@require_http_methods(["GET"])
@portal_view()
def funnel(request: HttpRequest) -> HttpResponse:
    form = DateRangeForm(request.GET or None)
    if request.GET and not form.is_valid():
        return show(request, "stats.html", {"form": form, "funnel": None}, status=400)
    if not request.GET:
        # The default range, shown in the form: the last 30 days.
        defaults = DateRangeForm({})
        defaults.is_valid()
        days = {name: defaults.cleaned_data[name].isoformat() for name in ("since", "until")}
        form = DateRangeForm(days)
        form.is_valid()
    data = form.cleaned_data
    result = stats.funnel(portal=portal_of(request), since=data["since"], until=data["until"])
    widest = max([result.leads, *(n for _, n in result.by_status)], default=0) or 1
    return show(request, "stats.html", {"form": form, "funnel": result, "widest": widest})
