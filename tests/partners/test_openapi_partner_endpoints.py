"""The partner API is described well enough to integrate from /api/docs/ alone: every
partner operation has a summary and documented responses; ours carry examples."""

from __future__ import annotations

from typing import Any

import pytest
from rest_framework.test import APIClient

pytestmark = pytest.mark.django_db

METHODS = ("get", "post", "put", "patch", "delete")
# Operations of partners/api.py, each documented with examples.
WITH_EXAMPLES = {
    ("/api/v1/partner/me", "get"),
    ("/api/v1/partner/products", "get"),
    ("/api/v1/partner/products/{product_id}", "get"),
    ("/api/v1/partner/products/{product_id}/change-requests", "post"),
    ("/api/v1/partner/change-requests", "get"),
    ("/api/v1/partner/change-requests/{change_request_id}", "get"),
    ("/api/v1/partner/webhook-messages", "get"),
    ("/api/v1/partner/webhook-messages/{message_id}", "get"),
    ("/api/v1/partner/webhook-messages/{message_id}/replay", "post"),
}


@pytest.fixture(scope="module")
def schema(django_db_blocker: Any) -> dict[str, Any]:
    with django_db_blocker.unblock():
        response = APIClient().get("/api/schema/?format=json")
    assert response.status_code == 200
    return dict(response.json())


def partner_operations(schema: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {
        (path, method): item[method]
        for path, item in schema["paths"].items()
        if path.startswith("/api/v1/partner/")
        for method in METHODS
        if method in item
    }


def test_every_partner_operation_has_a_summary_and_a_documented_response(schema):
    operations = partner_operations(schema)
    assert set(operations) >= WITH_EXAMPLES
    for (path, method), operation in operations.items():
        assert operation.get("summary", "").strip(), f"{method.upper()} {path}: no summary"
        responses = operation.get("responses", {})
        assert any(code.startswith("2") for code in responses), f"{method.upper()} {path}"
        for code, response in responses.items():
            assert response.get("description") is not None, f"{method.upper()} {path} {code}"


def test_our_partner_operations_carry_examples(schema):
    operations = partner_operations(schema)
    for path, method in WITH_EXAMPLES:
        operation = operations[(path, method)]
        bodies = [operation.get("requestBody", {}), *list(operation["responses"].values())]
        examples = [
            name
            for body in bodies
            for media in body.get("content", {}).values()
            for name in media.get("examples", {})
        ]
        assert examples, f"{method.upper()} {path}: no example"


def test_partner_operations_that_name_an_object_document_the_404(schema):
    for (path, method), operation in partner_operations(schema).items():
        if (path, method) in WITH_EXAMPLES and "{" in path:
            assert "404" in operation["responses"], f"{method.upper()} {path}"


def test_the_api_key_scheme_rate_limit_and_idempotency_are_described(schema):
    assert schema["components"]["securitySchemes"]["ApiKey"]["scheme"] == "bearer"
    assert "Retry-After" in schema["paths"]["/api/v1/partner/me"]["get"]["description"]
    change = schema["paths"]["/api/v1/partner/products/{product_id}/change-requests"]["post"]
    assert "Idempotency-Key" in change["description"]
