"""Test helpers: the routing holds in force on a partner or product, and ops placing and
lifting them in the admin."""

from __future__ import annotations

import uuid
from typing import Any

from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse

from partners.holds import active_holds
from partners.models import Partner, Product


def held_for(row: Partner | Product) -> set[str]:
    """The reasons routing to ``row`` itself is held for (a partner's partner-wide holds,
    or a product's own), as ``HoldReason`` values; empty when it is not held."""
    holds = active_holds()
    if isinstance(row, Product):
        holds = holds.filter(product_id=row.pk)
    else:
        holds = holds.filter(partner_id=row.pk, product__isnull=True)
    return set(holds.values_list("reason", flat=True))


def post_admin_form(row: Partner | Product, client: Client | None = None, **changes: Any) -> Any:
    """Change ``row`` through its admin change form, as ops save it (a superuser unless
    ``client`` is given; no inline rows sent: the page's inlines stay as they are).
    A ``None`` change leaves the field out (an unticked box). Returns the response: a
    redirect when saved, else the form page with its errors."""
    client = _ops_client(client)
    url = f"/admin/partners/{type(row)._meta.model_name}/{row.pk}/change/"
    page = client.get(url).context
    form = page["adminform"].form
    data: dict[str, Any] = {}
    for name, field in form.fields.items():
        value = form.initial.get(name, field.initial)
        if value is not None and value is not False and not field.disabled:
            data[name] = field.prepare_value(value)
    for inline in page["inline_admin_formsets"]:
        prefix = inline.formset.prefix
        data.update({f"{prefix}-TOTAL_FORMS": "0", f"{prefix}-INITIAL_FORMS": "0"})
    return client.post(
        url, {key: value for key, value in {**data, **changes}.items() if value is not None}
    )


def _ops_client(client: Client | None) -> Client:
    if client is None:
        client = Client()
        client.force_login(get_user_model().objects.create_superuser(f"ops-{uuid.uuid4().hex[:8]}"))
    return client


def pause_in_admin(partner: Partner, reason: str, client: Client | None = None) -> None:
    """Pause routing to ``partner`` as ops do: its pause page, with a reason."""
    url = reverse("admin:partners_partner_pause", args=[partner.pk])
    response = _ops_client(client).post(url, {"reason": reason})
    assert response.status_code == 302, response.context["form"].errors


def resume_in_admin(partner: Partner, reason: str, client: Client | None = None) -> None:
    """Resume routing to ``partner`` as ops do: its resume page, with a reason."""
    url = reverse("admin:partners_partner_resume", args=[partner.pk])
    response = _ops_client(client).post(url, {"reason": reason})
    assert response.status_code == 302, response.context["form"].errors


def save_in_admin(row: Partner | Product, client: Client | None = None, **changes: Any) -> None:
    """:func:`post_admin_form`, which must save."""
    response = post_admin_form(row, client, **changes)
    assert response.status_code == 302, response.context["adminform"].form.errors
