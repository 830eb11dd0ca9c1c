"""Consent receipts and withdrawal for the source that collected the consent; deletion
requests and their acknowledgement for the partners that received the data. Each query
starts from a selector scoped by the caller's tenant and key mode (``partners.scoping``):
a grant has the mode of the key that sent its referral, a deletion request its grant's."""

from __future__ import annotations

import base64
import uuid
from typing import Any

from django.db.models import QuerySet
from django_filters import rest_framework as filters
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import generics, serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from consent import deletion, grants, ledger
from consent.models import ConsentGrant, DeletionRequest
from partners.authentication import IsPartnerKey, IsSourceKey, client
from partners.errors import ApiError
from partners.idempotency import idempotent
from partners.key_mode import acting_key
from partners.reconnect import repeatable
from partners.scoping import visible_to


def source_grants(request: Request) -> QuerySet[ConsentGrant]:
    """The calling source's consent grants given through keys of the calling key's mode."""
    return visible_to(
        ConsentGrant.objects.select_related("text", "source"),
        request,
        source="source_id",
        sandbox="is_sandbox",
    )


def _source_grant(request: Request, receipt_id: uuid.UUID) -> ConsentGrant:
    # Another source's receipt, or one of the other mode, is a 404 like a missing one.
    return generics.get_object_or_404(source_grants(request), pk=receipt_id)


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
    # Safe to run again after a lost connection, keyed or not: withdrawing takes the grant's
    # row lock and is a no-op once done (grants.withdraw returns the first withdrawal), so a
    # run after a commit whose answer was lost answers the same receipt.
    @repeatable()
    def post(self, request: Request, receipt_id: uuid.UUID) -> Response:
        grant = _source_grant(request, receipt_id)
        serializer = WithdrawInput(data=request.data)
        serializer.is_valid(raise_exception=True)
        grants.withdraw(
            grant_id=grant.id,
            channel=serializer.validated_data["channel"],
            reason=serializer.validated_data.get("reason", ""),
            acting_key=acting_key(request),
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


# --- Partner: deletion requests after a withdrawal -------------------------------------------


class DeletionRequestOutput(serializers.ModelSerializer):
    receipt_id = serializers.UUIDField(source="withdrawal.grant_id")
    status = serializers.SerializerMethodField(
        help_text="outstanding, overdue (past due_at, not acknowledged) or acknowledged"
    )

    class Meta:
        model = DeletionRequest
        fields = [
            "withdrawal_id",
            "receipt_id",
            "lead_ids",
            "requested_at",
            "due_at",
            "acknowledged_at",
            "partner_acknowledged_at",
            "status",
        ]

    def get_status(self, request: DeletionRequest) -> str:
        return deletion.status_of(request)


class AckInput(serializers.Serializer):
    withdrawal_id = serializers.CharField(
        max_length=40, required=False, help_text="Must match the withdrawal in the URL"
    )
    lead_ids = serializers.ListField(
        child=serializers.CharField(max_length=80),
        required=False,
        help_text="When given: exactly the lead ids of the request",
    )
    acknowledged_at = serializers.DateTimeField(
        required=False, help_text="When you deleted the data (your clock)"
    )


class DeletionRequestFilter(filters.FilterSet):
    outstanding = filters.BooleanFilter(
        method="filter_outstanding", help_text="true: only requests you have not acknowledged"
    )

    class Meta:
        model = DeletionRequest
        fields: list[str] = []

    def filter_outstanding(
        self, queryset: QuerySet[DeletionRequest], name: str, value: bool | None
    ) -> QuerySet[DeletionRequest]:
        if value is None:
            return queryset
        return queryset.filter(acknowledged_at__isnull=value)


DELETION_REQUEST_EXAMPLE = {
    "withdrawal_id": 4711,
    "receipt_id": "6f1c1c7e-2f55-4a43-9d1e-0a3f3c2a9b10",
    "lead_ids": ["0b8e6a38-51d4-4c6e-8c4e-8a9b2f6d1e22"],
    "requested_at": "2026-11-22T08:00:00Z",
    "due_at": "2026-11-29T08:00:00Z",
    "acknowledged_at": None,
    "partner_acknowledged_at": None,
    "status": "outstanding",
}


def partner_deletion_requests(request: Request) -> QuerySet[DeletionRequest]:
    """The calling partner's deletion requests in the calling key's mode (the mode of the
    consent that was withdrawn, i.e. of the referral that carried it)."""
    return visible_to(
        DeletionRequest.objects.select_related("withdrawal"),
        request,
        partner="partner_id",
        sandbox="withdrawal__grant__is_sandbox",
    )


def _not_found() -> ApiError:
    # Another partner's withdrawal is a 404, exactly like one that does not exist.
    return ApiError("Not found.", code="not_found", status_code=status.HTTP_404_NOT_FOUND)


def _withdrawal_pk(raw: str) -> int:
    """The withdrawal id from the URL; anything that cannot be one is a JSON 404."""
    if not raw.isascii() or not raw.isdigit() or len(raw) > 18:
        raise _not_found()
    return int(raw)


class PartnerDeletionRequestListView(generics.ListAPIView):
    permission_classes = [IsPartnerKey]
    serializer_class = DeletionRequestOutput
    filterset_class = DeletionRequestFilter

    def get_queryset(self) -> QuerySet[DeletionRequest]:
        if getattr(self, "swagger_fake_view", False):
            return DeletionRequest.objects.none()
        return partner_deletion_requests(self.request)

    @extend_schema(
        tags=["partner"],
        summary="Deletion requests for applicants who withdrew consent",
        description="One request per withdrawal of an applicant whose data you received, "
        "with the leads that carried it. Delete the data, then acknowledge before `due_at`. "
        "The same requests arrive as signed `consent.withdrawn` webhooks.",
        examples=[
            OpenApiExample(
                "Outstanding request",
                value={"next": None, "previous": None, "results": [DELETION_REQUEST_EXAMPLE]},
                response_only=True,
            )
        ],
    )
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().get(request, *args, **kwargs)


WITHDRAWAL_ID = OpenApiParameter(
    "withdrawal_id", int, OpenApiParameter.PATH, description="`data.withdrawal_id` of the webhook"
)


class PartnerDeletionRequestDetailView(APIView):
    permission_classes = [IsPartnerKey]

    @extend_schema(
        tags=["partner"],
        summary="One of your deletion requests",
        parameters=[WITHDRAWAL_ID],
        responses={200: DeletionRequestOutput, 404: OpenApiResponse(description="Not yours")},
        examples=[OpenApiExample("Outstanding request", value=DELETION_REQUEST_EXAMPLE)],
    )
    def get(self, request: Request, withdrawal_id: str) -> Response:
        found = (
            partner_deletion_requests(request)
            .filter(withdrawal_id=_withdrawal_pk(withdrawal_id))
            .first()
        )
        if found is None:
            raise _not_found()
        return Response(DeletionRequestOutput(found).data)


class PartnerDeletionAckView(APIView):
    permission_classes = [IsPartnerKey]

    @extend_schema(
        tags=["partner"],
        summary="Confirm that you deleted a withdrawn applicant's data",
        description="Idempotent: acknowledging again returns 200 with the first "
        "acknowledgement's time. Accepts an `Idempotency-Key`.",
        parameters=[WITHDRAWAL_ID],
        request=AckInput,
        responses={
            200: DeletionRequestOutput,
            400: OpenApiResponse(description="Body does not match the request"),
            404: OpenApiResponse(description="Unknown, or another partner's withdrawal"),
        },
        examples=[
            OpenApiExample(
                "Acknowledge",
                request_only=True,
                value={
                    "withdrawal_id": "4711",
                    "lead_ids": ["0b8e6a38-51d4-4c6e-8c4e-8a9b2f6d1e22"],
                    "acknowledged_at": "2026-11-22T09:30:00Z",
                },
            ),
            OpenApiExample(
                "Acknowledged",
                response_only=True,
                value={
                    **DELETION_REQUEST_EXAMPLE,
                    "acknowledged_at": "2026-11-22T09:30:02Z",
                    "partner_acknowledged_at": "2026-11-22T09:30:00Z",
                    "status": "acknowledged",
                },
            ),
        ],
    )
    @idempotent
    # Safe to run again after a lost connection, keyed or not: acknowledging locks the
    # deletion request and is a no-op once it is acknowledged (consent.deletion.acknowledge).
    @repeatable()
    def post(self, request: Request, withdrawal_id: str) -> Response:
        partner_id = client(request).partner_id
        assert partner_id is not None  # IsPartnerKey
        pk = _withdrawal_pk(withdrawal_id)
        if not partner_deletion_requests(request).filter(withdrawal_id=pk).exists():
            raise _not_found()
        serializer = AckInput(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        if "withdrawal_id" in data and data["withdrawal_id"].strip() != str(pk):
            message = "withdrawal_id does not match the URL"
            raise ApiError(message, code="validation_error", details={"withdrawal_id": [message]})
        try:
            ack = deletion.acknowledge(
                withdrawal_id=pk,
                partner_id=partner_id,
                lead_ids=data.get("lead_ids"),
                partner_acknowledged_at=data.get("acknowledged_at"),
                is_sandbox=client(request).is_sandbox,
                acting_key=acting_key(request),
            )
        except DeletionRequest.DoesNotExist:
            raise _not_found() from None
        except deletion.AcknowledgementError as exc:
            raise ApiError(
                str(exc), code="validation_error", details={exc.field: [str(exc)]}
            ) from None
        return Response(DeletionRequestOutput(ack.request).data, status=status.HTTP_200_OK)
