"""Hostile input gets a 4xx in the API's one error shape, never a 500 or an HTML page.

The walk takes every API route from the URL resolver and every query parameter the OpenAPI
schema declares for it, and sends each one a set of hostile values.
"""

from __future__ import annotations

import base64
import json
import re
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.test import Client, override_settings
from django.urls import URLPattern, URLResolver, get_resolver, path
from drf_spectacular.generators import SchemaGenerator
from rest_framework.test import APIClient

from partners.models import Partner
from partners.parsers import MAX_JSON_DEPTH
from tests.conftest import partner_client
from tests.factories import ProductFactory

pytestmark = pytest.mark.django_db

HOSTILE_VALUES = [
    "2026-01-01T00:00:00+99:00",  # an offset no time zone has
    "9999-12-31T23:59:59-23:59",  # past year 9999 once in UTC
    "0001-01-01T00:00:00+01:00",  # before year 1 once in UTC
    "0000-01-01",
    "100000000000000000000",  # 10**20: past any database integer
    "9223372036854775808",  # 2**63
    "-1",
    "²",  # a Unicode digit: str.isdigit() says yes, int() says no
    "1e309",
    "NaN",
    "\x00",
    "' OR 1=1 --",
    "x" * 5000,
    "cD0yMDI2LTAxLTAx",  # base64 "p=2026-01-01": an unsigned, hand-made cursor
]
# A value for each path converter that no row has and no database integer holds.
CONVERTER_VALUES = {"uuid": str(uuid.uuid4()), "int": "100000000000000000000", "str": "x" * 300}


def _api_routes() -> Iterator[str]:
    """Every route under /api/v1/ as a path, converters filled with hostile values."""

    def walk(patterns: list[URLPattern | URLResolver], prefix: str) -> Iterator[str]:
        for entry in patterns:
            route = str(entry.pattern)
            if isinstance(entry, URLResolver):
                yield from walk(entry.url_patterns, prefix + route)
            elif prefix.startswith("api/v1/"):
                yield "/" + re.sub(
                    r"<(?:(\w+):)?\w+>",
                    lambda m: CONVERTER_VALUES[m.group(1) or "str"],
                    prefix + route,
                )

    return walk(get_resolver().url_patterns, "")


def _declared_query_params() -> dict[str, set[str]]:
    """Query parameters per OpenAPI path template, as the schema documents them."""
    schema: dict[str, Any] = SchemaGenerator().get_schema(request=None, public=True)
    out: dict[str, set[str]] = {}
    for template, operations in schema["paths"].items():
        names = {
            p["name"]
            for op in operations.values()
            for p in op.get("parameters", [])
            if p["in"] == "query"
        }
        out[template] = names
    return out


def _template_of(url: str, templates: set[str]) -> str | None:
    for template in templates:
        pattern = re.sub(r"\{[^}]+\}", "[^/]+", template)
        if re.fullmatch(pattern, url):
            return template
    return None


def _assert_error_shape(response: Any, context: str) -> None:
    assert response["Content-Type"].startswith("application/json"), context
    body = json.loads(response.content)
    assert set(body["error"]) == {"code", "message", "details"}, context


@pytest.fixture
def clients(source_client: APIClient, partner: Partner) -> dict[str, APIClient]:
    return {"partner": partner_client(partner), "source": source_client}


def test_every_api_route_answers_hostile_query_values_without_a_500(
    clients: dict[str, APIClient],
) -> None:
    """Each query parameter the schema declares for a route (filters, pagination, proof
    sizes), one hostile value at a time: a 400 from one must not hide a 500 from another."""
    routes = sorted(set(_api_routes()))
    declared = _declared_query_params()
    assert "/api/v1/partner/leads" in routes and len(routes) > 20  # the walk found the API
    tried: set[str] = set()
    for url in routes:
        template = _template_of(url, set(declared))
        client = clients["partner" if url.startswith("/api/v1/partner/") else "source"]
        for name in sorted(declared.get(template or "", set())):
            tried.add(name)
            for value in HOSTILE_VALUES:
                response = client.get(url, {name: value})
                context = f"GET {url}?{name}={value[:40]!r} -> {response.status_code}"
                assert response.status_code < 500, context
                if response.status_code >= 400:
                    _assert_error_shape(response, context)
    assert {"cursor", "page_size", "created_after", "created_before", "tree_size"} <= tried


# Actions that take no body: clearing a suppression list, rotating its shared key.
BODILESS_ACTIONS = {
    ("delete", "/api/v1/partner/suppression/hashes"),
    ("post", "/api/v1/partner/suppression/key"),
}


def test_every_api_route_answers_hostile_bodies_and_methods_without_a_500(
    clients: dict[str, APIClient],
) -> None:
    deep = "[" * 5000 + "]" * 5000
    for url in sorted(set(_api_routes())):
        client = clients["partner" if url.startswith("/api/v1/partner/") else "source"]
        for method in ("post", "put", "patch", "delete"):
            response = getattr(client, method)(url, data=deep, content_type="application/json")
            context = f"{method.upper()} {url} -> {response.status_code}"
            assert response.status_code < 500, context
            if response.status_code < 400:
                # Only an action that reads no body may succeed whatever it is sent.
                assert (method, url) in BODILESS_ACTIONS, context
                continue
            _assert_error_shape(response, context)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("created_after", "9999-12-31T23:59:59-23:59"),
        ("created_before", "0001-01-01T00:00:00+01:00"),
        ("created_after", "2026-01-01T00:00:00+99:00"),
        ("created_after", "0000-01-01"),
        ("created_after", "100000000000000000000"),
    ],
)
def test_impossible_date_filters_are_400_naming_the_field(
    partner: Partner, name: str, value: str
) -> None:
    response = partner_client(partner).get("/api/v1/partner/leads", {name: value})
    assert response.status_code == 400
    _assert_error_shape(response, value)
    assert list(response.json()["error"]["details"]) == [name]


@pytest.mark.parametrize(
    "size", ["²", "100000000000000000000", "9223372036854775808", "0", "-3", "1.5"]
)
def test_ledger_sizes_outside_a_bigint_are_400(source_client: APIClient, size: str) -> None:
    response = source_client.get("/api/v1/ledger/consistency", {"first": size, "second": "2"})
    assert response.status_code == 400
    assert list(response.json()["error"]["details"]) == ["first"]


def _unsigned_cursor(query: str) -> str:
    return base64.b64encode(query.encode()).decode()


@pytest.mark.parametrize(
    "cursor",
    [
        "garbage",
        _unsigned_cursor("p=2026-01-01"),  # DRF's own format, made by hand
        _unsigned_cursor("p=2026-01-01T00:00:00+99:00"),
        _unsigned_cursor("o=99999999999999999999999&r=1"),
        "WzAsMCwiMjAyNi0wMS0wMSJd:1vQz9k:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
    ],
)
def test_forged_or_garbage_cursor_is_400(partner: Partner, cursor: str) -> None:
    response = partner_client(partner).get("/api/v1/partner/products", {"cursor": cursor})
    assert response.status_code == 400
    body = response.json()["error"]
    assert body["code"] == "invalid_cursor" and list(body["details"]) == ["cursor"]


def test_cursor_the_server_gave_pages_through_and_works_only_on_its_own_list(
    partner: Partner,
) -> None:
    client = partner_client(partner)
    products = {str(ProductFactory(partner=partner).id) for _ in range(3)}
    seen: set[str] = set()
    url: str | None = "/api/v1/partner/products?page_size=1"
    while url:
        page = client.get(url).json()
        seen |= {p["id"] for p in page["results"]}
        url = page["next"]
    assert seen == products
    first = client.get("/api/v1/partner/products", {"page_size": 1}).json()
    cursor = first["next"].split("cursor=")[1].split("&")[0]
    elsewhere = client.get("/api/v1/partner/leads", {"cursor": cursor})
    assert elsewhere.status_code == 400


def test_body_over_the_limit_is_413_in_the_error_shape(source_client: APIClient) -> None:
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    body = b'{"note": "' + b"x" * limit + b'"}'
    response = source_client.post("/api/v1/referrals", data=body, content_type="application/json")
    assert response.status_code == 413
    _assert_error_shape(response, "413")
    assert response.json()["error"]["code"] == "request_too_large"


def test_admin_body_over_the_limit_is_413() -> None:
    body = "a=" + "x" * settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    response = Client().post(
        "/admin/login/", data=body, content_type="application/x-www-form-urlencoded"
    )
    assert response.status_code == 413


def test_body_at_the_limit_is_read(source_client: APIClient) -> None:
    response = source_client.post("/api/v1/referrals", data={}, format="json")
    assert response.status_code == 400  # validated, not refused for size


@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH + 1, 5_000, 100_000])
def test_deeply_nested_json_is_400(source_client: APIClient, depth: int) -> None:
    for document in ("[" * depth + "]" * depth, '{"a":' * depth + "1" + "}" * depth):
        response = source_client.post(
            "/api/v1/referrals", data=document, content_type="application/json"
        )
        assert response.status_code == 400
        assert response.json()["error"]["code"] == "parse_error"


def test_json_within_the_depth_limit_is_parsed(source_client: APIClient) -> None:
    document = "[" * MAX_JSON_DEPTH + "]" * MAX_JSON_DEPTH
    response = source_client.post(
        "/api/v1/referrals", data=document, content_type="application/json"
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "validation_error"  # parsed, then validated


@pytest.mark.parametrize(
    "url", ["/api/nope", "/api/v1/nope", "/api/v2/referrals", "/api", "/api/v1/referrals/x/y"]
)
@pytest.mark.parametrize("method", ["get", "post", "delete"])
def test_unknown_api_paths_are_a_json_404(url: str, method: str) -> None:
    response = getattr(Client(), method)(url)
    assert response.status_code == 404
    _assert_error_shape(response, url)
    assert response.json()["error"]["code"] == "not_found"


def test_api_docs_without_a_slash_still_redirect() -> None:
    response = Client().get("/api/docs")
    assert response.status_code == 301 and response["Location"] == "/api/docs/"


def test_method_not_allowed_is_a_json_405(partner: Partner) -> None:
    response = partner_client(partner).delete("/api/v1/partner/leads")
    assert response.status_code == 405
    _assert_error_shape(response, "405")


def _crash(request: HttpRequest) -> HttpResponse:
    raise RuntimeError("boom")


urlpatterns = [path("api/v1/crash", _crash), path("elsewhere/crash", _crash)]
handler500 = "partners.error_responses.server_error"


@override_settings(ROOT_URLCONF=__name__)
def test_a_crash_outside_drf_answers_in_the_error_shape_under_api_only() -> None:
    client = Client(raise_request_exception=False)
    api = client.get("/api/v1/crash")
    assert api.status_code == 500
    _assert_error_shape(api, "500")
    other = client.get("/elsewhere/crash")
    assert other.status_code == 500 and not other["Content-Type"].startswith("application/json")
