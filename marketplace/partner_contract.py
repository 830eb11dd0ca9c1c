"""What the platform sends partners, as OpenAPI 3.1 ``webhooks`` in the served schema.

The REST API describes what partners call; this module describes what *we* call on the
partner's side: the direct post of a lead (``lead.post``), the anonymised ping of ping-post
products (``lead.ping``) and the answer each expects (a decision; a bid for a ping), and
every signed webhook event (``lead.delivered``, ``consent.withdrawn``, ``invoice.issued``,
``credit_note.issued``). drf-spectacular lists ``WEBHOOKS`` (``SPECTACULAR_SETTINGS``) as raw
operations and :func:`add_contract_schemas` (a post-processing hook) puts the payload schemas
into ``components.schemas``, so the document served at ``/api/schema/`` is the contract.

The schemas are JSON Schema (OpenAPI 3.1's dialect) and stay open to fields added later (a
partner must ignore fields it does not know); tests validate what the platform really sends
against them with every object closed, so nothing is sent that the document does not name.
Payload builders: ``marketplace.delivery.post_payload``, ``marketplace.pings.ping_payload``,
``partners.webhook_delivery.enqueue`` (the envelope) and its callers.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiWebhook

from partners.currencies import CURRENCIES
from partners.models import RISK_TIERS, DeliveryMode

REF = "#/components/schemas/"
UUID: dict[str, Any] = {"type": "string", "format": "uuid"}
MONEY: dict[str, Any] = {
    "type": "string",
    "pattern": r"^-?\d+\.\d{2}$",
    "description": "A decimal amount as a string with two places, in the stated currency.",
}
CURRENCY: dict[str, Any] = {"type": "string", "enum": list(CURRENCIES), "description": "ISO 4217"}
MODE: dict[str, Any] = {
    "type": "string",
    "enum": ["live", "sandbox"],
    "description": "Sandbox traffic (test data sent with sandbox keys) or live.",
}
TIMESTAMP: dict[str, Any] = {"type": "string", "format": "date-time"}
LOAN_PURPOSE: dict[str, Any] = {"type": "string", "maxLength": 40, "examples": ["consumption"]}


def _object(
    properties: dict[str, Any], *, description: str, optional: tuple[str, ...] = ()
) -> dict[str, Any]:
    return {
        "type": "object",
        "description": description,
        "required": [name for name in properties if name not in optional],
        "properties": properties,
    }


def _event(event_type: str, data: str, description: str) -> dict[str, Any]:
    """The Standard Webhooks envelope every event shares: type, timestamp, data."""
    return _object(
        {
            "type": {"const": event_type},
            "timestamp": {**TIMESTAMP, "description": "When the event was queued."},
            "data": {"$ref": REF + data},
        },
        description=description,
    )


SCHEMAS: dict[str, dict[str, Any]] = {
    # --- lead.post: the full application, to the winner(s) of a ping or a direct post ---
    "LeadPost": _object(
        {
            "type": {"const": "lead.post"},
            "lead_id": {**UUID, "description": "Our lead id: quote it in events you report."},
            "mode": MODE,
            "loan": {"$ref": REF + "LeadPostLoan"},
            "risk_tier": {"type": "string", "enum": RISK_TIERS},
            "region": {"type": "string", "description": "Province or region."},
            "applicant": {"$ref": REF + "LeadPostApplicant"},
            "consent": {"$ref": REF + "LeadPostConsent"},
        },
        description="A lead posted to the product's post URL: the only message that carries "
        "the applicant's personal data (each post is logged as a disclosure). The same "
        "lead_id may be posted again after an error: answer it with the same decision.",
    ),
    "LeadPostLoan": _object(
        {
            "amount": MONEY,
            "currency": CURRENCY,
            "term_months": {"type": "integer", "minimum": 1},
            "purpose": LOAN_PURPOSE,
        },
        description="The loan asked for.",
    ),
    "LeadPostApplicant": _object(
        {
            "full_name": {"type": "string"},
            "phone": {"type": "string"},
            "national_id": {"type": "string"},
            "birth_date": {"type": "string", "format": "date"},
            "monthly_income": MONEY,
            "employer": {"type": "string"},
            "address": {"type": "string"},
        },
        description="The applicant's personal data, disclosed under the consent below.",
    ),
    "LeadPostConsent": _object(
        {
            "receipt_id": {**UUID, "description": "The consent receipt (Kantara shape)."},
            "text_version": {"type": "string"},
            "text_sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
        },
        description="The consent that allows this disclosure: the exact text's version and "
        "SHA-256. A consent.withdrawn event names the same receipt_id.",
    ),
    "LeadPostAnswer": {
        "description": "Your decision on a posted lead, in a 200 JSON object.",
        "oneOf": [{"$ref": REF + "LeadPostAccept"}, {"$ref": REF + "LeadPostReject"}],
        "discriminator": {
            "propertyName": "decision",
            "mapping": {"accept": REF + "LeadPostAccept", "reject": REF + "LeadPostReject"},
        },
    },
    "LeadPostAccept": _object(
        {
            "decision": {"const": "accept"},
            "reference": {
                "type": "string",
                "description": "Your own reference for the lead (first 120 characters kept).",
            },
        },
        description="You take the lead: report its outcomes with POST "
        "/api/v1/partner/leads/{lead_id}/events.",
        optional=("reference",),
    ),
    "LeadPostReject": _object(
        {"decision": {"const": "reject"}, "reason": {"type": "string", "maxLength": 200}},
        description="You turn the lead down (an auction then offers it to the next bidder).",
        optional=("reason",),
    ),
    # --- lead.ping: anonymised bands, to every ping-post candidate ---------------------
    "LeadPing": _object(
        {
            "type": {"const": "lead.ping"},
            "ping_id": {"type": "string", "pattern": "^ping_[0-9a-f]{32}$"},
            "risk_tier": {"type": "string", "enum": RISK_TIERS},
            "amount": MONEY,
            "currency": {**CURRENCY, "description": "The loan's currency; bids are in it."},
            "term_months": {"type": "integer", "minimum": 1},
            "region": {"type": "string"},
            "age_band": {"type": "string", "examples": ["25-34"]},
            "income_band": {"type": "string", "examples": ["5000-7999", "30000+"]},
            "purpose": LOAN_PURPOSE,
        },
        description="An anonymised ping: bands a partner prices on, never personal data. "
        "Answer within the product's ping timeout (the auction's budget may be shorter).",
    ),
    "LeadPingAnswer": {
        "description": "Your answer to a ping, in a 200 JSON object.",
        "oneOf": [
            {"$ref": REF + "LeadPingBid"},
            {"$ref": REF + "LeadPingAccept"},
            {"$ref": REF + "LeadPingReject"},
        ],
        "discriminator": {
            "propertyName": "decision",
            "mapping": {
                "bid": REF + "LeadPingBid",
                "accept": REF + "LeadPingAccept",
                "reject": REF + "LeadPingReject",
            },
        },
    },
    "LeadPingBid": _object(
        {
            "decision": {"const": "bid"},
            "bid": {
                "description": "Your price for the lead: more than 0, at most 100000, in "
                "whole cents; a string is safest.",
                "oneOf": [
                    {"type": "string", "pattern": r"^\d+(\.\d{1,2})?$"},
                    {"type": "number", "exclusiveMinimum": 0, "maximum": 100000},
                ],
            },
            "currency": {
                **CURRENCY,
                "description": "Optional; when given it must be the ping's currency.",
            },
        },
        description="A bid; the highest bidders get the post.",
        optional=("currency",),
    ),
    "LeadPingAccept": _object(
        {"decision": {"const": "accept"}},
        description="You take the lead at your fee schedule's price.",
    ),
    "LeadPingReject": _object(
        {"decision": {"const": "reject"}, "reason": {"type": "string", "maxLength": 200}},
        description="Not interested.",
        optional=("reason",),
    ),
    # --- Webhook events: Standard Webhooks envelope {type, timestamp, data} ------------
    "LeadDeliveredEvent": _event(
        "lead.delivered", "LeadDeliveredData", "A lead reached you (post accepted, or pulled)."
    ),
    "LeadDeliveredData": _object(
        {
            "lead_id": UUID,
            "product_id": UUID,
            "delivered_at": TIMESTAMP,
            "mode": MODE,
            "delivery_mode": {"type": "string", "enum": list(DeliveryMode.values)},
        },
        description="Ids and times only.",
    ),
    "ConsentWithdrawnEvent": _event(
        "consent.withdrawn",
        "ConsentWithdrawnData",
        "The applicant withdrew the consent under which you received these leads: delete "
        "their data and acknowledge with POST "
        "/api/v1/partner/consent-withdrawals/{withdrawal_id}/ack before due_at.",
    ),
    "ConsentWithdrawnData": _object(
        {
            "withdrawal_id": {"type": "integer"},
            "receipt_id": UUID,
            "lead_ids": {"type": "array", "items": UUID},
            "requested_at": TIMESTAMP,
            "due_at": TIMESTAMP,
        },
        description="Ids and times only.",
    ),
    "InvoiceIssuedEvent": _event(
        "invoice.issued", "InvoiceIssuedData", "An invoice was issued to you."
    ),
    "InvoiceIssuedData": _object(
        {
            "invoice_id": UUID,
            "number": {"type": "string", "pattern": r"^INV-\d{4}-\d{6}$"},
            "period": {"type": "string", "pattern": r"^\d{4}-\d{2}$"},
            "currency": CURRENCY,
            "total": MONEY,
            "due_date": {"type": "string", "format": "date"},
        },
        description="Read it with GET /api/v1/partner/invoices/{invoice_id} (PDF: .../pdf).",
    ),
    "CreditNoteIssuedEvent": _event(
        "credit_note.issued", "CreditNoteIssuedData", "A credit note was issued to you."
    ),
    "CreditNoteIssuedData": _object(
        {
            "credit_note_id": UUID,
            "number": {"type": "string", "pattern": r"^CN-\d{4}-\d{6}$"},
            "invoice_number": {"type": "string"},
            "currency": CURRENCY,
            "total": MONEY,
        },
        description="A credit against the named invoice.",
    ),
}

# Event type -> the schema of its body: what a test checks each sent event against.
EVENT_SCHEMAS = {
    "lead.delivered": "LeadDeliveredEvent",
    "consent.withdrawn": "ConsentWithdrawnEvent",
    "invoice.issued": "InvoiceIssuedEvent",
    "credit_note.issued": "CreditNoteIssuedEvent",
}

SIGNATURE_HEADERS = [
    {
        "name": "webhook-id",
        "in": "header",
        "required": True,
        "description": "The message id, the same on every retry of it (drop duplicates by "
        "it): msg_... for events, lead_<lead id> for posts, the ping_id for pings.",
        "schema": {
            "type": "string",
            "pattern": "^(msg_[0-9a-f]{32}|lead_[0-9a-f-]{36}|ping_[0-9a-f]{32})$",
        },
    },
    {
        "name": "webhook-timestamp",
        "in": "header",
        "required": True,
        "description": "Unix time in seconds of this attempt; refuse stale ones.",
        "schema": {"type": "string", "pattern": r"^\d+$"},
    },
    {
        "name": "webhook-signature",
        "in": "header",
        "required": True,
        "description": "Standard Webhooks signatures: space-separated v1,<base64 HMAC-SHA256> "
        "of '{webhook-id}.{webhook-timestamp}.{body}' with your whsec_ secret (two during a "
        "secret rotation: accept either). Verify with the standardwebhooks library.",
        "schema": {"type": "string", "pattern": r"^v1,[A-Za-z0-9+/]+=*( v1,[A-Za-z0-9+/]+=*)*$"},
    },
]

EXAMPLE_LEAD = "0b6a6e3e-6d1c-4b8e-9d7e-3f1f0c2a4b51"
EXAMPLES: dict[str, dict[str, Any]] = {
    "LeadPost": {
        "type": "lead.post",
        "lead_id": EXAMPLE_LEAD,
        "mode": "live",
        "loan": {
            "amount": "12000.00",
            "currency": "CNY",
            "term_months": 12,
            "purpose": "consumption",
        },
        "risk_tier": "R4",
        "region": "广东省",
        "applicant": {
            "full_name": "王小明",
            "phone": "13800138000",
            "national_id": "110101199003071234",
            "birth_date": "1990-03-07",
            "monthly_income": "8500.00",
            "employer": "Shenzhen Example Tech Co.",
            "address": "广东省深圳市南山区科技园 1 号",
        },
        "consent": {
            "receipt_id": "6f1c1c7e-2f55-4a43-9d1e-0a3f3c2a9b10",
            "text_version": "2026-01",
            "text_sha256": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
        },
    },
    "LeadPostAccept": {"decision": "accept", "reference": "ACME-00A1B2C3D4"},
    "LeadPostReject": {"decision": "reject", "reason": "outside_credit_policy"},
    "LeadPing": {
        "type": "lead.ping",
        "ping_id": "ping_5d41402abc4b2a76b9719d911017c592",
        "risk_tier": "R4",
        "amount": "12000.00",
        "currency": "CNY",
        "term_months": 12,
        "region": "广东省",
        "age_band": "35-44",
        "income_band": "8000-11999",
        "purpose": "consumption",
    },
    "LeadPingBid": {"decision": "bid", "bid": "42.50", "currency": "CNY"},
    "LeadPingAccept": {"decision": "accept"},
    "LeadPingReject": {"decision": "reject", "reason": "region_not_served"},
    "LeadDeliveredEvent": {
        "type": "lead.delivered",
        "timestamp": "2026-03-02T08:15:30.120000+00:00",
        "data": {
            "lead_id": EXAMPLE_LEAD,
            "product_id": "2c9a3f0e-7b1d-4f57-8a61-0d5c9b2e7f14",
            "delivered_at": "2026-03-02T08:15:30.100000+00:00",
            "mode": "live",
            "delivery_mode": "ping_post",
        },
    },
    "ConsentWithdrawnEvent": {
        "type": "consent.withdrawn",
        "timestamp": "2026-03-09T10:00:00.500000+00:00",
        "data": {
            "withdrawal_id": 318,
            "receipt_id": "6f1c1c7e-2f55-4a43-9d1e-0a3f3c2a9b10",
            "lead_ids": [EXAMPLE_LEAD],
            "requested_at": "2026-03-09T10:00:00.400000+00:00",
            "due_at": "2026-03-19T10:00:00.400000+00:00",
        },
    },
    "InvoiceIssuedEvent": {
        "type": "invoice.issued",
        "timestamp": "2026-04-01T02:00:00+00:00",
        "data": {
            "invoice_id": "a3e1f5d2-0c4b-4e8a-9b7f-61d2c3b4a5e6",
            "number": "INV-2026-000042",
            "period": "2026-03",
            "currency": "CNY",
            "total": "15840.00",
            "due_date": "2026-05-01",
        },
    },
    "CreditNoteIssuedEvent": {
        "type": "credit_note.issued",
        "timestamp": "2026-04-03T09:30:00+00:00",
        "data": {
            "credit_note_id": "c1d2e3f4-a5b6-4c7d-8e9f-0a1b2c3d4e5f",
            "number": "CN-2026-000007",
            "invoice_number": "INV-2026-000042",
            "currency": "CNY",
            "total": "120.00",
        },
    },
}


def _content(schema: str, *examples: str) -> dict[str, Any]:
    return {
        "application/json": {
            "schema": {"$ref": REF + schema},
            "examples": {name: {"value": EXAMPLES[name]} for name in examples},
        }
    }


ANSWER_ELSE = (
    "Anything else (another status, a body that is not a JSON object with a decision, no "
    "answer in time) counts as an error with a reason in your delivery log."
)


def _operation(
    *, summary: str, description: str, body: str, answer: str, answers: tuple[str, ...]
) -> dict[str, Any]:
    return {
        "post": {
            "operationId": f"partner_receives_{body}",
            "summary": summary,
            "description": description,
            "tags": ["Sent to partners"],
            "parameters": SIGNATURE_HEADERS,
            "requestBody": {"required": True, "content": _content(body, body)},
            "responses": {
                "200": {"description": "Your decision.", "content": _content(answer, *answers)},
                "default": {"description": ANSWER_ELSE},
            },
        }
    }


def _event_operation(event_type: str, schema: str) -> dict[str, Any]:
    return {
        "post": {
            "operationId": "partner_receives_" + event_type.replace(".", "_"),
            "summary": f"Webhook event {event_type}",
            "description": SCHEMAS[schema]["description"] + " Sent to each of your active "
            "webhook endpoints subscribed to it, signed per Standard Webhooks.",
            "tags": ["Sent to partners"],
            "parameters": SIGNATURE_HEADERS,
            "requestBody": {"required": True, "content": _content(schema, schema)},
            "responses": {
                "2XX": {"description": "Received: delivered, never sent again."},
                "410": {"description": "Gone: the endpoint is disabled; nothing more is sent."},
                "default": {
                    "description": "Any other answer, or none within 10 s: retried with "
                    "exponential backoff for about three days (replayable from the admin)."
                },
            },
        }
    }


WEBHOOKS = [
    OpenApiWebhook(
        name="lead.post",
        decorator=_operation(
            summary="Direct post of a lead (and the post to a ping's winner)",
            description=SCHEMAS["LeadPost"]["description"],
            body="LeadPost",
            answer="LeadPostAnswer",
            answers=("LeadPostAccept", "LeadPostReject"),
        ),
    ),
    OpenApiWebhook(
        name="lead.ping",
        decorator=_operation(
            summary="Ping of a ping-post product",
            description=SCHEMAS["LeadPing"]["description"],
            body="LeadPing",
            answer="LeadPingAnswer",
            answers=("LeadPingBid", "LeadPingAccept", "LeadPingReject"),
        ),
    ),
    *(
        OpenApiWebhook(name=event_type, decorator=_event_operation(event_type, schema))
        for event_type, schema in EVENT_SCHEMAS.items()
    ),
]


def add_contract_schemas(result: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    """drf-spectacular post-processing hook: the payload schemas the webhooks refer to."""
    result.setdefault("components", {}).setdefault("schemas", {}).update(SCHEMAS)
    return result
