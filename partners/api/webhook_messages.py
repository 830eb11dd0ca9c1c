"""The caller's webhook messages: the list, one message with its attempt log, and a
replay that queues the message again.
"""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from django_filters import rest_framework as filters
from drf_spectacular.utils import OpenApiExample, OpenApiResponse, extend_schema
from rest_framework import generics, serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from partners import webhook_delivery
from partners.api.selectors import NOT_FOUND, TAGS, partner_webhook_messages
from partners.authentication import IsPartnerKey
from partners.errors import ApiError
from partners.models import MessageStatus, WebhookAttempt, WebhookMessage
from partners.query_params import UtcDateTimeFilter


class WebhookAttemptOutput(serializers.ModelSerializer):
    class Meta:
        model = WebhookAttempt
        fields = ["attempted_at", "http_status", "latency_ms", "error"]


class WebhookMessageOutput(serializers.ModelSerializer):
    endpoint_url = serializers.CharField(source="endpoint.url")

    class Meta:
        model = WebhookMessage
        fields = [
            "id",
            "event_type",
            "status",
            "is_sandbox",
            "attempts",
            "next_attempt_at",
            "delivered_at",
            "created_at",
            "endpoint_url",
            "payload",
        ]


class WebhookMessageDetailOutput(WebhookMessageOutput):
    attempt_log = WebhookAttemptOutput(many=True, help_text="Newest first")

    class Meta(WebhookMessageOutput.Meta):
        fields = [*WebhookMessageOutput.Meta.fields, "attempt_log"]


MESSAGE_EXAMPLE = {
    "id": "msg_6f1c0e1f8a7b4c3d9e2f1a0b9c8d7e6f",
    "event_type": "consent.withdrawn",
    "status": "pending",
    "is_sandbox": False,
    "attempts": 2,
    "next_attempt_at": "2026-11-22T08:35:05Z",
    "delivered_at": None,
    "created_at": "2026-11-22T08:00:00Z",
    "endpoint_url": "https://lender.example.com/webhooks",
    "payload": {
        "type": "consent.withdrawn",
        "timestamp": "2026-11-22T08:00:00+00:00",
        "data": {"lead_ids": ["2c1f..."]},
    },
}


class WebhookMessageFilter(filters.FilterSet):
    status = filters.ChoiceFilter(choices=MessageStatus.choices)
    event_type = filters.CharFilter()
    created_after = UtcDateTimeFilter(field_name="created_at", lookup_expr="gte")

    class Meta:
        model = WebhookMessage
        fields = ["status", "event_type"]


class WebhookMessageListView(generics.ListAPIView):
    permission_classes = [IsPartnerKey]
    serializer_class = WebhookMessageOutput
    filterset_class = WebhookMessageFilter

    def get_queryset(self) -> QuerySet[WebhookMessage]:
        if getattr(self, "swagger_fake_view", False):
            return WebhookMessage.objects.none()
        return partner_webhook_messages(self.request)

    @extend_schema(
        tags=TAGS,
        summary="Webhook messages we sent (or are sending) you",
        description="Filter by `status` (pending, delivered, failed) and `event_type`. "
        "Verify what you receive with the official `standardwebhooks` library.",
        examples=[OpenApiExample("Retrying", value=MESSAGE_EXAMPLE, response_only=True)],
    )
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().get(request, *args, **kwargs)


class WebhookMessageDetailView(APIView):
    permission_classes = [IsPartnerKey]

    @extend_schema(
        tags=TAGS,
        summary="One webhook message with every delivery attempt",
        responses={200: WebhookMessageDetailOutput, 404: NOT_FOUND},
        examples=[
            OpenApiExample(
                "Retrying",
                response_only=True,
                value={
                    **MESSAGE_EXAMPLE,
                    "attempt_log": [
                        {
                            "attempted_at": "2026-11-22T08:05:05Z",
                            "http_status": 503,
                            "latency_ms": 41,
                            "error": "http 503",
                        },
                        {
                            "attempted_at": "2026-11-22T08:00:00Z",
                            "http_status": None,
                            "latency_ms": 10000,
                            "error": "timed out",
                        },
                    ],
                },
            )
        ],
    )
    def get(self, request: Request, message_id: str) -> Response:
        message = generics.get_object_or_404(
            partner_webhook_messages(request).prefetch_related("attempt_log"), pk=message_id
        )
        return Response(WebhookMessageDetailOutput(message).data)


class WebhookMessageReplayView(APIView):
    permission_classes = [IsPartnerKey]

    @extend_schema(
        tags=TAGS,
        summary="Send one of your webhook messages again from the start",
        description="The message keeps its id (`webhook-id`), so a receiver that already "
        "processed it can drop the duplicate. Its retry schedule starts over.",
        request=None,
        responses={
            202: WebhookMessageOutput,
            404: NOT_FOUND,
            409: OpenApiResponse(description="The endpoint is disabled; re-enable it first"),
        },
        examples=[
            OpenApiExample(
                "Queued again",
                response_only=True,
                status_codes=["202"],
                value={**MESSAGE_EXAMPLE, "attempts": 0, "next_attempt_at": None},
            )
        ],
    )
    def post(self, request: Request, message_id: str) -> Response:
        message = generics.get_object_or_404(partner_webhook_messages(request), pk=message_id)
        if not message.endpoint.is_active:
            raise ApiError(
                "The webhook endpoint is disabled; ask us to re-enable it, then replay.",
                code="endpoint_disabled",
                status_code=status.HTTP_409_CONFLICT,
            )
        webhook_delivery.replay(message_id=message.id)
        message.refresh_from_db()
        return Response(WebhookMessageOutput(message).data, status=status.HTTP_202_ACCEPTED)
