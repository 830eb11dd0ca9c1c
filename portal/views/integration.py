"""API keys (created and shown once, revoked), the webhook endpoint (URL, secret rotation
shown once), and the delivery logs of lead posts and webhook messages, with replay."""

from __future__ import annotations

from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.views.decorators.http import require_http_methods, require_POST

from partners.models import ApiKey, WebhookEndpoint, WebhookMessage
from partners.urlsafety import UnsafeUrlError
from portal import actions, selectors
from portal.access import portal_of, portal_view
from portal.forms import KeyForm, WebhookUrlForm
from portal.views.common import page_of, query_without_page, show


def _keys_page(
    request: HttpRequest, form: KeyForm, *, status: int = 200, **extra: object
) -> HttpResponse:
    portal = portal_of(request)
    return show(
        request,
        "keys.html",
        {"keys": selectors.api_keys(portal)[:200], "form": form, **extra},
        status=status,
    )


@require_http_methods(["GET"])
@portal_view()
def key_list(request: HttpRequest) -> HttpResponse:
    return _keys_page(request, KeyForm())


@require_POST
@portal_view(manage=True)
def key_create(request: HttpRequest) -> HttpResponse:
    form = KeyForm(request.POST)
    if not form.is_valid():
        return _keys_page(request, form, status=400)
    issued = actions.create_key(
        portal=portal_of(request), name=form.cleaned_data["name"], mode=form.cleaned_data["mode"]
    )
    # Rendered, not redirected: the key exists in this response only (pages are no-store).
    return _keys_page(request, KeyForm(), issued=issued)


@require_POST
@portal_view(manage=True)
def key_revoke(request: HttpRequest, key_id: int) -> HttpResponse:
    try:
        actions.revoke_key(portal=portal_of(request), key_id=key_id)
    except ApiKey.DoesNotExist:
        raise Http404 from None
    return redirect("portal:keys")


def _webhooks_page(
    request: HttpRequest, form: WebhookUrlForm, *, status: int = 200, **extra: object
) -> HttpResponse:
    portal = portal_of(request)
    endpoints = list(selectors.webhook_endpoints(portal))
    page = page_of(
        request, selectors.webhook_messages(portal).prefetch_related("attempt_log"), size=25
    )
    return show(
        request,
        "webhooks.html",
        {
            "endpoints": endpoints,
            "form": form,
            "page": page,
            "query": query_without_page(request),
            **extra,
        },
        status=status,
    )


@require_http_methods(["GET"])
@portal_view()
def webhooks(request: HttpRequest) -> HttpResponse:
    endpoint = selectors.webhook_endpoints(portal_of(request)).first()
    return _webhooks_page(
        request, WebhookUrlForm(initial={"url": endpoint.url if endpoint else ""})
    )


@require_POST
@portal_view(manage=True)
def webhook_url(request: HttpRequest) -> HttpResponse:
    form = WebhookUrlForm(request.POST)
    if not form.is_valid():
        return _webhooks_page(request, form, status=400)
    try:
        secret = actions.set_webhook_url(portal=portal_of(request), url=form.cleaned_data["url"])
    except UnsafeUrlError as exc:
        form.add_error("url", str(exc))
        return _webhooks_page(request, form, status=400)
    if secret is None:
        return redirect("portal:webhooks")
    return _webhooks_page(request, WebhookUrlForm(request.POST), secret=secret)


@require_POST
@portal_view(manage=True)
def webhook_rotate(request: HttpRequest, endpoint_id: int) -> HttpResponse:
    try:
        secret = actions.rotate_webhook_secret(portal=portal_of(request), endpoint_id=endpoint_id)
    except WebhookEndpoint.DoesNotExist:
        raise Http404 from None
    endpoint = selectors.webhook_endpoints(portal_of(request)).first()
    form = WebhookUrlForm(initial={"url": endpoint.url if endpoint else ""})
    return _webhooks_page(request, form, secret=secret)


@require_http_methods(["GET"])
@portal_view()
def message_detail(request: HttpRequest, message_id: str) -> HttpResponse:
    portal = portal_of(request)
    message = get_object_or_404(selectors.webhook_messages(portal), pk=message_id)
    return show(
        request,
        "message_detail.html",
        {"message": message, "attempts": message.attempt_log.all()[:50]},
    )


@require_POST
@portal_view(manage=True)
def message_replay(request: HttpRequest, message_id: str) -> HttpResponse:
    portal = portal_of(request)
    try:
        actions.replay_message(portal=portal, message_id=message_id)
    except WebhookMessage.DoesNotExist:
        raise Http404 from None
    except actions.EndpointDisabled as exc:
        message = get_object_or_404(selectors.webhook_messages(portal), pk=message_id)
        return show(
            request,
            "message_detail.html",
            {"message": message, "attempts": message.attempt_log.all()[:50], "error": str(exc)},
            status=409,
        )
    return redirect("portal:message_detail", message_id=message_id)


@require_http_methods(["GET"])
@portal_view()
def delivery_list(request: HttpRequest) -> HttpResponse:
    portal = portal_of(request)
    page = page_of(request, selectors.delivery_attempts(portal).select_related("lead"))
    return show(request, "deliveries.html", {"page": page, "query": query_without_page(request)})
