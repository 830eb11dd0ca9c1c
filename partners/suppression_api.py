"""Partner API for suppression lists (``partners.suppression``): the shared key, bulk upload
of hashed customer numbers, the list's size, and emptying it. Partner keys only; each key
mode has its own list (a sandbox key manages the sandbox list), like traffic. Included by
the project's URLconf (``urlpatterns`` below)."""

from __future__ import annotations

import uuid
from typing import Any

from django.urls import path
from drf_spectacular.utils import OpenApiExample, extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from partners import suppression
from partners.authentication import IsPartnerKey
from partners.errors import ApiError
from partners.idempotency import idempotent
from partners.scoping import caller

TAGS = ["partner"]
HASHING = (
    "Each hash is the lower-case hex HMAC-SHA256, under your suppression key (UTF-8), of one "
    "customer's normalised phone number (E.164 digits without `+`: `8613800138000`) or "
    "national ID number (no whitespace, upper case: `11010119900307123X`). We never see "
    "the numbers; applicants whose own hashes are on your list are not referred to you."
)


def _tenant(request: Request) -> tuple[uuid.UUID, bool]:
    api_client = caller(request)
    assert api_client.partner_id is not None  # IsPartnerKey
    return api_client.partner_id, api_client.is_sandbox


class SuppressionOutput(serializers.Serializer[Any]):
    count = serializers.IntegerField(help_text="Hashes on the list (this key mode)")
    key_created_at = serializers.DateTimeField(
        allow_null=True, help_text="When the current key was made; null: no key yet"
    )


class HashesInput(serializers.Serializer[Any]):
    hashes = serializers.ListField(
        child=serializers.RegexField(
            r"^[0-9a-f]{64}$",
            error_messages={"invalid": "Not a lower-case hex HMAC-SHA256 (64 characters)."},
        ),
        min_length=1,
        max_length=suppression.MAX_BATCH,
    )


class HashesOutput(serializers.Serializer[Any]):
    added = serializers.IntegerField(help_text="New hashes (ones already listed are skipped)")
    count = serializers.IntegerField()


class KeyOutput(serializers.Serializer[Any]):
    key = serializers.CharField(help_text="Shown once: store it now")
    created_at = serializers.DateTimeField()


def _summary(partner_id: uuid.UUID, is_sandbox: bool) -> dict[str, Any]:
    return {
        "count": suppression.count(partner_id=partner_id, is_sandbox=is_sandbox),
        "key_created_at": suppression.key_created_at(partner_id=partner_id, is_sandbox=is_sandbox),
    }


class SuppressionView(APIView):
    permission_classes = [IsPartnerKey]

    @extend_schema(tags=TAGS, summary="Your suppression list's size", responses=SuppressionOutput)
    def get(self, request: Request) -> Response:
        return Response(SuppressionOutput(_summary(*_tenant(request))).data)


class SuppressionKeyView(APIView):
    permission_classes = [IsPartnerKey]

    @extend_schema(
        tags=TAGS,
        summary="Make (or rotate) your suppression key",
        description="A new key, shown once. Rotating empties the list: hashes under the old "
        "key can no longer match, so upload them again under the new one. " + HASHING,
        request=None,
        responses={201: KeyOutput},
    )
    # Not replayable by Idempotency-Key: a stored response would keep the key in clear.
    def post(self, request: Request) -> Response:
        partner_id, is_sandbox = _tenant(request)
        key = suppression.rotate_key(partner_id=partner_id, is_sandbox=is_sandbox)
        created_at = suppression.key_created_at(partner_id=partner_id, is_sandbox=is_sandbox)
        return Response(
            KeyOutput({"key": key, "created_at": created_at}).data,
            status=status.HTTP_201_CREATED,
            headers={"Cache-Control": "no-store"},
        )


class SuppressionHashesView(APIView):
    permission_classes = [IsPartnerKey]

    @extend_schema(
        tags=TAGS,
        summary="Add hashed customer numbers to your suppression list",
        description=f"Up to {suppression.MAX_BATCH} hashes a request, all or nothing: one "
        "invalid hash rejects the request with its position in `details`. " + HASHING,
        request=HashesInput,
        responses={200: HashesOutput},
        examples=[OpenApiExample("Two hashes", request_only=True, value={"hashes": ["0" * 64]})],
    )
    @idempotent
    def post(self, request: Request) -> Response:
        partner_id, is_sandbox = _tenant(request)
        body = HashesInput(data=request.data)
        body.is_valid(raise_exception=True)
        if suppression.key_created_at(partner_id=partner_id, is_sandbox=is_sandbox) is None:
            raise ApiError(
                "Make your suppression key first (POST .../suppression/key) and hash under it.",
                code="no_suppression_key",
                status_code=status.HTTP_409_CONFLICT,
            )
        added = suppression.add_digests(
            partner_id=partner_id, is_sandbox=is_sandbox, digests=body.validated_data["hashes"]
        )
        count = suppression.count(partner_id=partner_id, is_sandbox=is_sandbox)
        return Response(HashesOutput({"added": added, "count": count}).data)

    @extend_schema(
        tags=TAGS, summary="Empty your suppression list", request=None, responses=SuppressionOutput
    )
    def delete(self, request: Request) -> Response:
        partner_id, is_sandbox = _tenant(request)
        suppression.clear(partner_id=partner_id, is_sandbox=is_sandbox)
        return Response(SuppressionOutput(_summary(partner_id, is_sandbox)).data)


urlpatterns = [
    path("partner/suppression", SuppressionView.as_view(), name="partner-suppression"),
    path("partner/suppression/key", SuppressionKeyView.as_view(), name="partner-suppression-key"),
    path(
        "partner/suppression/hashes",
        SuppressionHashesView.as_view(),
        name="partner-suppression-hashes",
    ),
]
