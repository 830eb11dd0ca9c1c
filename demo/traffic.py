"""The billing side of a simulated month: partners return and reverse some leads through
the partner API (before and after invoicing, so both netted lines and credit notes
appear), and pay some invoices (in full, in part, or not at all)."""

from __future__ import annotations

import random
from collections import Counter
from datetime import timedelta
from typing import Any

import httpx
from django.utils import timezone

from billing.models import Invoice, InvoiceStatus, ReturnReason
from billing.payments import record_payment
from demo.lenders import SimulatedLender
from marketplace.models import EventType, Lead, LeadEvent

REASONS = [r for r in ReturnReason.values if r != ReturnReason.OTHER]


def _keys(lenders: tuple[SimulatedLender, ...]) -> dict[str, str]:
    return {lender.slug: lender.api_key for lender in lenders if lender.api_key}


def post_corrections(
    client: httpx.Client,
    lenders: tuple[SimulatedLender, ...],
    rng: random.Random,
    *,
    return_share: float,
    reversal_share: float,
    tag: str,
) -> Counter[str]:
    """Return a share of accepted leads and reverse a share of funded loans, as partners
    would, through POST /api/v1/partner/leads/{id}/events."""
    keys = _keys(lenders)
    outcome: Counter[str] = Counter()
    now = timezone.now() - timedelta(seconds=1)
    window = now - timedelta(days=6)
    candidates = (
        Lead.objects.filter(
            is_sandbox=False,
            delivered_at__gte=window,
            partner__slug__in=list(keys),
            events__type=EventType.ACCEPTED,
        )
        .exclude(events__type__in=[EventType.RETURNED, EventType.REVERSAL])
        .select_related("partner")
        .order_by("created_at")
        .distinct()
    )
    for lead in candidates:
        headers = {"Authorization": f"Bearer {keys[lead.partner.slug]}"}
        funded = LeadEvent.objects.filter(lead=lead, type=EventType.FUNDED).first()
        body: dict[str, Any] | None = None
        if funded is not None and rng.random() < reversal_share:
            body = {
                "event_id": f"{funded.external_id}-reversal-{tag}",
                "type": "reversal",
                "occurred_at": now.isoformat(),
                "reverses": funded.external_id,
            }
        elif rng.random() < return_share:
            body = {
                "event_id": f"sim-return-{lead.id}-{tag}",
                "type": "returned",
                "occurred_at": now.isoformat(),
                "reason": rng.choice(REASONS),
            }
        if body is None:
            continue
        response = client.post(
            f"/api/v1/partner/leads/{lead.id}/events", json=body, headers=headers
        )
        outcome[f"{body['type']} {response.status_code}"] += 1
    return outcome


def pay_some_invoices(rng: random.Random) -> Counter[str]:
    """Pay about half the issued invoices in full and a quarter in part."""
    paid: Counter[str] = Counter()
    for invoice in Invoice.objects.filter(status=InvoiceStatus.ISSUED).order_by("number"):
        draw = rng.random()
        if draw < 0.5:
            amount, label = invoice.total, "paid in full"
        elif draw < 0.75:
            amount, label = (invoice.total / 2).quantize(invoice.total), "paid in part"
        else:
            continue
        if amount <= 0:
            continue
        record_payment(
            partner_id=invoice.partner_id,
            currency=invoice.currency,
            amount=str(amount),
            received_at=timezone.now(),
            bank_reference=f"SIM-{invoice.number}",
        )
        paid[label] += 1
    return paid
