"""Partners' products change only through reviewed change requests.

A partner proposes new values for some fields of one of its products (the API parses and
bounds each field); ``propose_change`` checks the proposal against the product as it would
become (ranges, APR cap, delivery URLs against private networks) and stores it pending. An
operator approves it (``approve_change``: checked again against the product as it is *now*,
applied and the request marked in one transaction; saving bumps ``Product.updated_at`` so
every process's matching index reloads) or rejects it with a note the partner can read.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import models, transaction
from django.utils import timezone

from partners.models import (
    ApiKey,
    ChangeRequestStatus,
    DeliveryMode,
    Product,
    ProductChangeRequest,
)
from partners.urlsafety import UnsafeUrlError, check_partner_url

# What a partner may propose: the credit box, delivery settings and caps. Never the
# partner, ids or timestamps.
CHANGEABLE_FIELDS = (
    "name",
    "is_active",
    "min_amount",
    "max_amount",
    "min_term_months",
    "max_term_months",
    "risk_tiers",
    "regions",
    "excluded_regions",
    "min_age",
    "max_age",
    "min_monthly_income",
    "employment_types",
    "purposes",
    "channels",
    "apr_min",
    "apr_max",
    "delivery_mode",
    "post_url",
    "ping_url",
    "ping_timeout_ms",
    "post_timeout_ms",
    "daily_cap",
    "monthly_cap",
    "dedupe_days",
    "exclusive",
)
URL_FIELDS = ("post_url", "ping_url")
# (lower field, upper field, message) for ranges that must not be inverted.
RANGES = (
    ("min_amount", "max_amount", "The maximum amount must be at least the minimum amount."),
    ("min_term_months", "max_term_months", "The maximum term must be at least the minimum term."),
    ("min_age", "max_age", "The maximum age must be at least the minimum age."),
    ("apr_min", "apr_max", "The maximum APR must be at least the minimum APR."),
    ("daily_cap", "monthly_cap", "The monthly cap must be at least the daily cap."),
)


class ChangeRequestError(Exception):
    """The proposal (or applying it now) would make an invalid product."""

    def __init__(self, errors: dict[str, list[str]], message: str = "") -> None:
        super().__init__(message or "The proposed change is not valid.")
        self.errors = errors


def current_values(product: Product) -> dict[str, Any]:
    return {name: getattr(product, name) for name in CHANGEABLE_FIELDS}


def _to_python(changes: Mapping[str, Any]) -> dict[str, Any]:
    """Stored JSON values (Decimals as strings) back to the model fields' types."""
    out = {}
    for name, value in changes.items():
        field = Product._meta.get_field(name)
        assert isinstance(field, models.Field)
        out[name] = field.to_python(value)
    return out


def credit_box_errors(values: Mapping[str, Any], changed: set[str]) -> dict[str, list[str]]:
    """Rules across fields, on the product as it would be; errors are reported on a changed
    field (the one the partner can fix). Each field's own bounds are the API's job."""
    errors: dict[str, list[str]] = {}

    def add(fields: tuple[str, ...], message: str) -> None:
        target = next((f for f in reversed(fields) if f in changed), fields[-1])
        errors.setdefault(target, []).append(message)

    for low, high, message in RANGES:
        if values[low] is not None and values[high] is not None and values[high] < values[low]:
            add((low, high), message)
    apr_cap = Decimal(settings.APR_CAP)
    if "apr_min" in changed and values["apr_min"] > apr_cap:
        add(
            ("apr_min",),
            f"The minimum APR is above the platform's APR cap ({apr_cap}): the product "
            "would never be matched.",
        )
    overlap = set(values["regions"]) & set(values["excluded_regions"])
    if overlap:
        add(
            ("regions", "excluded_regions"),
            f"Regions both allowed and excluded: {', '.join(sorted(overlap))}.",
        )
    mode = values["delivery_mode"]
    if mode in {DeliveryMode.DIRECT_POST, DeliveryMode.PING_POST} and not values["post_url"]:
        add(("delivery_mode", "post_url"), "This delivery mode needs a post URL.")
    if mode == DeliveryMode.PING_POST and not values["ping_url"]:
        add(("delivery_mode", "ping_url"), "Ping-post delivery needs a ping URL.")
    for name in URL_FIELDS:
        if name in changed and values[name]:
            try:
                check_partner_url(values[name])
            except UnsafeUrlError as exc:
                errors.setdefault(name, []).append(f"{str(exc).capitalize()}.")
    return errors


def propose_change(
    *,
    product: Product,
    changes: Mapping[str, Any],
    note: str = "",
    api_key: ApiKey | None = None,
) -> ProductChangeRequest:
    """Store a pending change request; ``changes`` are typed values of CHANGEABLE_FIELDS."""
    unknown = sorted(set(changes) - set(CHANGEABLE_FIELDS))
    if unknown:
        raise ChangeRequestError({name: ["This field cannot be changed."] for name in unknown})
    current = current_values(product)
    effective = {name: value for name, value in changes.items() if current[name] != value}
    if not effective:
        raise ChangeRequestError(
            {"non_field_errors": ["The proposal changes nothing: propose at least one change."]}
        )
    errors = credit_box_errors({**current, **effective}, set(effective))
    if errors:
        raise ChangeRequestError(errors)
    return ProductChangeRequest.objects.create(
        partner_id=product.partner_id,
        product=product,
        # As stored (Decimals as strings), so the object returned reads like one loaded.
        changes=json.loads(json.dumps(effective, cls=DjangoJSONEncoder)),
        note=note,
        requested_by_key=api_key,
    )


def approve_change(
    *, change_request_id: uuid.UUID, decided_by: Any, note: str = ""
) -> ProductChangeRequest:
    """Apply the change to the product and mark the request approved, atomically. A request
    that was already decided is returned unchanged."""
    with transaction.atomic():
        # Lock the request first, then the product (the only order used): two approvals
        # of requests for one product apply one after the other, each checked on the
        # product as the other left it.
        request = ProductChangeRequest.objects.select_for_update().get(pk=change_request_id)
        if request.status != ChangeRequestStatus.PENDING:
            return request
        product = Product.objects.select_for_update().get(pk=request.product_id)
        changes = _to_python(request.changes)
        errors = credit_box_errors({**current_values(product), **changes}, set(changes))
        if errors:
            raise ChangeRequestError(
                errors, "The change no longer fits the product as it is now; reject it."
            )
        for name, value in changes.items():
            setattr(product, name, value)
        product.save()  # bumps updated_at: matching indexes reload the credit box
        request.status = ChangeRequestStatus.APPROVED
        request.decided_by = decided_by
        request.decided_at = timezone.now()
        request.decision_note = note
        request.save(update_fields=["status", "decided_by", "decided_at", "decision_note"])
    return request


def reject_change(
    *, change_request_id: uuid.UUID, decided_by: Any, note: str = ""
) -> ProductChangeRequest:
    """Mark a pending request rejected (no-op when already decided)."""
    # Compare-and-set: a second decision finds nothing pending and changes nothing.
    ProductChangeRequest.objects.filter(
        pk=change_request_id, status=ChangeRequestStatus.PENDING
    ).update(
        status=ChangeRequestStatus.REJECTED,
        decided_by=decided_by,
        decided_at=timezone.now(),
        decision_note=note,
    )
    return ProductChangeRequest.objects.get(pk=change_request_id)
