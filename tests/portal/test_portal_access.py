"""Who reaches which portal page: every portal URL and method, walked for partner A's
staff against partner B's objects (404), anonymous visitors (the portal's login page),
users who are not partner staff (403), view-only staff on changes (403), and CSRF."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from django.test import Client
from django.urls import URLPattern, reverse

from portal import urls as portal_urls
from tests.portal.conftest import Side, World, client_for


@dataclass(frozen=True)
class Route:
    name: str
    method: str
    kwargs: Callable[[Side], dict[str, Any]]  # the URL's object of one partner
    data: Callable[[Side], dict[str, Any]] = lambda side: {}

    def url(self, side: Side) -> str:
        return reverse(f"portal:{self.name}", kwargs=self.kwargs(side))


def _none(side: Side) -> dict[str, Any]:
    return {}


# Every portal page that acts for a partner, by method. Object pages name the partner's
# object; for partner A's staff, B's object must not exist.
ROUTES = [
    Route("home", "get", _none),
    Route("set_mode", "post", _none, lambda side: {"mode": "sandbox"}),
    Route("leads", "get", _none),
    Route("leads_csv", "get", _none),
    Route("lead_detail", "get", lambda side: {"lead_id": side.lead.pk}),
    Route(
        "lead_return",
        "post",
        lambda side: {"lead_id": side.lead.pk},
        lambda side: {"reason": "duplicate", "form_id": "7d0f5f0e-4a8a-4a55-9d0e-0c1b2a3d4e5f"},
    ),
    # The world's lead was delivered: re-sending it is refused (409), after the access checks.
    Route("lead_resend", "post", lambda side: {"lead_id": side.lead.pk}),
    Route("returns", "get", _none),
    Route("stats", "get", _none),
    Route("invoices", "get", _none),
    Route("invoice_detail", "get", lambda side: {"invoice_id": side.invoice.pk}),
    Route("invoice_pdf", "get", lambda side: {"invoice_id": side.invoice.pk}),
    Route("credit_note_pdf", "get", lambda side: {"note_id": side.credit_note.pk}),
    Route("statement", "get", _none),
    Route("payments", "get", _none),
    Route("keys", "get", _none),
    Route("key_create", "post", _none, lambda side: {"name": "ci", "mode": "sandbox"}),
    Route("key_revoke", "post", lambda side: {"key_id": side.key.pk}),
    Route("webhooks", "get", _none),
    Route("webhook_url", "post", _none, lambda side: {"url": "http://127.0.0.1:9/new-hooks"}),
    Route("webhook_rotate", "post", lambda side: {"endpoint_id": side.endpoint.pk}),
    Route("message_detail", "get", lambda side: {"message_id": side.message.pk}),
    Route("message_replay", "post", lambda side: {"message_id": side.message.pk}),
    Route("deliveries", "get", _none),
    Route("withdrawals", "get", _none),
    Route("withdrawal_ack", "post", lambda side: {"withdrawal_id": side.deletion.withdrawal_id}),
]
OBJECT_ROUTES = [route for route in ROUTES if route.kwargs is not _none]
CHANGES = [route for route in ROUTES if route.method == "post" and route.name != "set_mode"]
# Pages anyone may open: the login page, the invitation page (its token is the key).
PUBLIC = {"login", "logout", "invite"}


def _call(client: Client, route: Route, side: Side) -> Any:
    call = client.post if route.method == "post" else client.get
    return call(route.url(side), route.data(side))


def test_the_walk_covers_every_portal_url() -> None:
    names = {p.name for p in portal_urls.urlpatterns if isinstance(p, URLPattern)}
    walked = {route.name for route in ROUTES} | PUBLIC | {"pick_partner"}
    assert names == walked


def test_each_route_answers_its_own_partners_staff(world: World) -> None:
    """The walk's baseline: A's staff get A's pages (200, a redirect after a change)."""
    for route in ROUTES:
        client = client_for(world.users["alpha"])
        response = _call(client, route, world.a)
        # A re-send of the world's delivered lead reaches the lead and is refused on its merits.
        expected = (409,) if route.name == "lead_resend" else (200, 302)
        assert response.status_code in expected, (route.name, response.status_code)
        if response.status_code == 302:
            assert "/portal/login/" not in response["Location"], route.name


def test_another_partners_objects_do_not_exist_for_partner_staff(world: World) -> None:
    client = client_for(world.users["alpha"])
    for route in OBJECT_ROUTES:
        response = _call(client, route, world.b)
        assert response.status_code == 404, (route.name, route.method, response.status_code)
    # Nothing of B's changed on the way.
    world.b.key.refresh_from_db()
    world.b.deletion.refresh_from_db()
    assert world.b.key.revoked_at is None
    assert world.b.deletion.acknowledged_at is None
    assert not world.b.lead.events.filter(type="returned").exists()


def test_objects_of_the_other_mode_do_not_exist(world: World) -> None:
    client = client_for(world.users["alpha"])
    sandbox_lead = reverse("portal:lead_detail", kwargs={"lead_id": world.a.sandbox_lead.pk})
    assert client.get(sandbox_lead).status_code == 404  # live mode by default
    client.post(reverse("portal:set_mode"), {"mode": "sandbox"})
    assert client.get(sandbox_lead).status_code == 200
    for route in OBJECT_ROUTES:
        if route.name in ("key_revoke", "webhook_rotate"):
            continue  # configuration: the same in both modes
        response = _call(client, route, world.a)
        assert response.status_code == 404, (route.name, response.status_code)


def test_anonymous_visitors_are_sent_to_the_portal_login(world: World) -> None:
    client = Client()
    for route in [*ROUTES, Route("pick_partner", "get", _none)]:
        response = _call(client, route, world.a)
        assert response.status_code == 302, route.name
        assert response["Location"].startswith("/portal/login/?next="), route.name


@pytest.mark.parametrize("who", ["ops", "root", "plain"])
def test_users_who_are_not_partner_staff_are_refused(world: World, who: str) -> None:
    client = client_for(world.users[who])
    for route in [*ROUTES, Route("pick_partner", "get", _none)]:
        response = _call(client, route, world.a)
        assert response.status_code == 403, (who, route.name, response.status_code)


def test_view_only_staff_read_but_change_nothing(world: World) -> None:
    client = client_for(world.users["alpha-viewer"])
    assert client.get(reverse("portal:keys")).status_code == 200
    for route in CHANGES:
        response = _call(client, route, world.a)
        assert response.status_code == 403, (route.name, response.status_code)
    world.a.key.refresh_from_db()
    assert world.a.key.revoked_at is None


def test_every_change_needs_the_csrf_token(world: World) -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(world.users["alpha"])
    for route in [*CHANGES, ROUTES[1]]:
        response = _call(client, route, world.a)
        assert response.status_code == 403, (route.name, response.status_code)
    world.a.key.refresh_from_db()
    assert world.a.key.revoked_at is None
    # With the token from a page, the same change goes through.
    client.get(reverse("portal:keys"))
    token = client.cookies["csrftoken"].value
    url = reverse("portal:key_revoke", kwargs={"key_id": world.a.key.pk})
    assert client.post(url, {"csrfmiddlewaretoken": token}).status_code == 302
    world.a.key.refresh_from_db()
    assert world.a.key.revoked_at is not None


def test_staff_of_several_partners_pick_one(world: World) -> None:
    client = client_for(world.users["both"])
    response = client.get(reverse("portal:leads"))
    assert response.status_code == 302 and response["Location"] == reverse("portal:pick_partner")
    page = client.get(reverse("portal:pick_partner"))
    assert "Alpha Lending" in page.content.decode() and "Bravo Credit" in page.content.decode()
    client.post(reverse("portal:pick_partner"), {"partner": str(world.b.partner.pk)})
    b_lead = reverse("portal:lead_detail", kwargs={"lead_id": world.b.lead.pk})
    a_lead = reverse("portal:lead_detail", kwargs={"lead_id": world.a.lead.pk})
    assert client.get(b_lead).status_code == 200
    assert client.get(a_lead).status_code == 404  # the partner picked, not every granted one
    # A partner not granted cannot be picked, even by id.
    alpha_only = client_for(world.users["alpha"])
    response = alpha_only.post(reverse("portal:pick_partner"), {"partner": str(world.b.partner.pk)})
    assert response.status_code == 400
    assert alpha_only.get(b_lead).status_code == 404


def test_portal_pages_are_not_cached_and_run_under_the_policy(world: World) -> None:
    client = client_for(world.users["alpha"])
    for name in ("home", "keys", "leads", "login"):
        response = client.get(reverse(f"portal:{name}"))
        assert "no-store" in response["Cache-Control"], name
        policy = response["Content-Security-Policy"]
        assert "script-src 'self'" in policy and "style-src 'self'" in policy, name
        assert "unsafe-inline" not in policy, name


def test_out_of_range_ids_are_not_found(world: World) -> None:
    client = client_for(world.users["alpha"])
    for path in (
        "/portal/keys/100000000000000000000/revoke/",
        "/portal/withdrawals/9223372036854775808/ack/",
        "/portal/leads/not-a-uuid/",
        "/portal/webhooks/messages/" + "x" * 300 + "/",
    ):
        assert client.post(path).status_code in (404, 405), path
        assert client.get(path).status_code in (404, 405), path


HOSTILE = ["", "x", "-1", "0", "9" * 30, "2026-13-45", "NaN", "\x00", "' OR 1=1 --", "x" * 3000]
QUERY_PARAMS = ["page", "status", "created_from", "created_to", "since", "until", "currency"]


def test_hostile_query_values_never_break_a_page(world: World) -> None:
    client = client_for(world.users["alpha"])
    for route in ROUTES:
        if route.method != "get":
            continue
        for name in QUERY_PARAMS:
            for value in HOSTILE:
                response = client.get(route.url(world.a), {name: value})
                assert response.status_code in (200, 400), (route.name, name, value[:20])
