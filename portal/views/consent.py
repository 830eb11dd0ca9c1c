"""Deletion requests of applicants who withdrew consent, to acknowledge once deleted."""

from __future__ import annotations

from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.views.decorators.http import require_http_methods, require_POST

from consent.deletion import status_of
from consent.models import DeletionRequest
from portal import actions, selectors
from portal.access import portal_of, portal_view
from portal.views.common import page_of, query_without_page, show


@require_http_methods(["GET"])
@portal_view()
def withdrawal_list(request: HttpRequest) -> HttpResponse:
    portal = portal_of(request)
    page = page_of(request, selectors.deletion_requests(portal))
    rows = [(request_, status_of(request_)) for request_ in page.object_list]
    return show(
        request,
        "withdrawals.html",
        {"page": page, "rows": rows, "query": query_without_page(request)},
    )


@require_POST
@portal_view(manage=True)
def withdrawal_ack(request: HttpRequest, withdrawal_id: int) -> HttpResponse:
    try:
        actions.acknowledge_deletion(portal=portal_of(request), withdrawal_id=withdrawal_id)
    except DeletionRequest.DoesNotExist:
        raise Http404 from None
    return redirect("portal:withdrawals")
