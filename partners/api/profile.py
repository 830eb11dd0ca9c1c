"""``GET /partner/me``: the calling partner's profile with its active routing holds."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiExample, extend_schema, extend_schema_field
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from partners.api.selectors import TAGS, _partner_id
from partners.authentication import IsPartnerKey, client
from partners.holds import active_holds
from partners.models import Partner, RoutingHold
from partners.throttling import rate_limit_per_minute


class HoldOutput(serializers.ModelSerializer):
    """A routing hold in force: why (``ops_pause``, ``credit_limit``, ``budget``) and since
    when. Ops' own note stays internal."""

    since = serializers.DateTimeField(source="created_at")

    class Meta:
        model = RoutingHold
        fields = ["reason", "since"]


class PartnerProfileOutput(serializers.ModelSerializer):
    key = serializers.SerializerMethodField()
    holds = serializers.SerializerMethodField()

    class Meta:
        model = Partner
        fields = [
            "id",
            "name",
            "legal_name",
            "licence_number",
            "status",
            "holds",
            "monthly_budget",
            "contact_name",
            "contact_email",
            "key",
        ]

    @extend_schema(
        responses={
            200: {
                "type": "object",
                "properties": {
                    "prefix": {"type": "string"},
                    "mode": {"type": "string", "enum": ["live", "sandbox"]},
                    "name": {"type": "string"},
                    "rate_limit_per_minute": {"type": "integer", "nullable": True},
                    "created_at": {"type": "string", "format": "date-time"},
                },
            }
        }
    )
    @extend_schema_field(HoldOutput(many=True))
    def get_holds(self, partner: Partner) -> list[dict[str, Any]]:
        held = active_holds().filter(partner_id=partner.pk, product__isnull=True)
        return list(HoldOutput(held, many=True).data)

    def get_key(self, partner: Partner) -> dict[str, Any]:
        api_key = self.context["api_key"]
        return {
            "prefix": api_key.prefix,
            "mode": api_key.mode,
            "name": api_key.name,
            "rate_limit_per_minute": rate_limit_per_minute(api_key),
            "created_at": api_key.created_at,
        }


class PartnerMeView(APIView):
    permission_classes = [IsPartnerKey]

    @extend_schema(
        tags=TAGS,
        summary="Your partner profile, status and the calling key's mode",
        description="`status` is onboarding, sandbox, live, paused or offboarded; "
        "`holds` lists why leads are held although you are live (empty when not), one "
        "entry per reason with the time it was placed: `ops_pause` (the operator paused "
        "you), `credit_limit` (what you owe exceeds your credit limit; lifted once it no "
        "longer does), `budget` (this month's charges net of credits reached "
        "`monthly_budget`, CNY, null: no cap; lifted at the start of the next UTC month or "
        "by a higher budget). Each is lifted on its own: leads resume when none is left. "
        "`key.mode` is the mode of the key you called with: a sandbox key sees and "
        "changes sandbox traffic only, a live key live traffic only; both read your "
        "products, only a live key changes them or reads invoices and the statement. "
        "`key.rate_limit_per_minute` is the key's rate limit (null: none); "
        "over it every call answers 429 with a `Retry-After` header (seconds).",
        responses={200: PartnerProfileOutput},
        examples=[
            OpenApiExample(
                "Live partner, sandbox key",
                response_only=True,
                value={
                    "id": "5a7c9a56-2f7c-4d1e-9a57-0c7f6c1b2f10",
                    "name": "Hengfeng Consumer Finance",
                    "legal_name": "Hengfeng Consumer Finance Co., Ltd.",
                    "licence_number": "CF-2019-0042",
                    "status": "live",
                    "holds": [{"reason": "budget", "since": "2026-11-20T14:03:11Z"}],
                    "monthly_budget": "200000.00",
                    "contact_name": "Integration desk",
                    "contact_email": "api@example.com",
                    "key": {
                        "prefix": "3f9a1c2b7d4e",
                        "mode": "sandbox",
                        "name": "staging",
                        "rate_limit_per_minute": 600,
                        "created_at": "2026-11-01T09:00:00Z",
                    },
                },
            )
        ],
    )
    def get(self, request: Request) -> Response:
        api_key = client(request).api_key
        partner = Partner.objects.get(pk=_partner_id(request))
        return Response(PartnerProfileOutput(partner, context={"api_key": api_key}).data)
