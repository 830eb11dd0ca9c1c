"""Consent receipts and withdrawal for the source that collected the consent."""

from __future__ import annotations

import base64
import uuid
from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework import generics, serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from consent import grants, ledger
from consent.models import ConsentGrant
from partners.authentication import IsSourceKey, client
from partners.idempotency import idempotent


def _source_grant(request: Request, receipt_id: uuid.UUID) -> ConsentGrant:
    # Another source's receipt is a 404, exactly like one that does not exist.
    return generics.get_object_or_404(
        ConsentGrant.objects.select_related("text", "source"),
        pk=receipt_id,
        source_id=client(request).source_id,
    )


class ConsentReceiptView(APIView):
    permission_classes = [IsSourceKey]

    @extend_schema(
        tags=["consent"],
        summary="A consent receipt (Kantara / ISO 27560 shape)",
        responses={200: OpenApiTypes.OBJECT},
    )
    def get(self, request: Request, receipt_id: uuid.UUID) -> Response:
        return Response(grants.receipt(_source_grant(request, receipt_id)))


class WithdrawInput(serializers.Serializer):
    channel = serializers.CharField(max_length=40, default="api")
    reason = serializers.CharField(max_length=200, required=False, allow_blank=True)


class ConsentWithdrawView(APIView):
    permission_classes = [IsSourceKey]

    @extend_schema(
        tags=["consent"],
        summary="Withdraw consent (effective at once; withdrawing again is a no-op)",
        request=WithdrawInput,
        responses={200: OpenApiTypes.OBJECT},
    )
    @idempotent
    def post(self, request: Request, receipt_id: uuid.UUID) -> Response:
        grant = _source_grant(request, receipt_id)
        serializer = WithdrawInput(data=request.data)
        serializer.is_valid(raise_exception=True)
        grants.withdraw(
            grant_id=grant.id,
            channel=serializer.validated_data["channel"],
            reason=serializer.validated_data.get("reason", ""),
        )
        grant.refresh_from_db()
        return Response(grants.receipt(grant), status=status.HTTP_200_OK)


class LedgerPublicKeyView(APIView):
    permission_classes: list[Any] = []
    authentication_classes: list[Any] = []

    @extend_schema(
        tags=["consent"],
        summary="The consent ledger's checkpoint signing key",
        responses={200: OpenApiTypes.OBJECT},
    )
    def get(self, request: Request) -> Response:
        return Response(
            {
                "algorithm": "Ed25519",
                "public_key": base64.b64encode(ledger.public_key_bytes()).decode(),
                "key_id": ledger.public_key_id(),
                "checkpoint_origin": ledger.CHECKPOINT_ORIGIN,
            }
        )
