"""Fixtures for the partners app's tests: partners with products, API clients, webhook
messages made through the real outbound path, and admin users of every kind."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.test import Client

from partners import webhook_delivery
from partners.models import MessageStatus, Partner, WebhookMessage
from partners.permissions import grant_partner_access
from partners.webhook_signing import create_endpoint
from tests.factories import PartnerFactory, ProductFactory


@pytest.fixture(autouse=True)
def _fresh_rate_limits() -> Iterator[None]:
    """Rate-limit counters live in the cache; no test inherits another's."""
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def partner(db: None) -> Partner:
    """A partner with one product named "Own loan", told apart from ``other_partner``'s."""
    partner = PartnerFactory()
    ProductFactory(partner=partner, name="Own loan")
    return partner


@pytest.fixture
def other_partner(db: None) -> Partner:
    partner = PartnerFactory()
    ProductFactory(partner=partner, name="Their loan")
    return partner


@pytest.fixture
def make_message(db: None) -> Callable[..., WebhookMessage]:
    """``make_message(partner, event_type=..., status=..., is_sandbox=...)`` through
    ``webhook_delivery.enqueue`` (the test transaction never commits: no delivery happens)."""
    counter = {"n": 0}

    def make(
        partner: Partner,
        *,
        event_type: str = "lead.delivered",
        status: str = MessageStatus.PENDING,
        is_sandbox: bool = False,
        url: str = "http://127.0.0.1:9/hooks",
    ) -> WebhookMessage:
        endpoint = partner.webhooks.filter(url=url).first()
        if endpoint is None:
            endpoint, _ = create_endpoint(partner=partner, url=url)
        counter["n"] += 1
        (message,) = webhook_delivery.enqueue(
            partner_id=partner.id,
            event_type=event_type,
            data={"n": counter["n"]},
            dedupe_key=f"test:{counter['n']}",
            is_sandbox=is_sandbox,
        )
        if status != MessageStatus.PENDING:
            WebhookMessage.objects.filter(pk=message.pk).update(status=status, attempts=3)
            message.refresh_from_db()
        return message

    return make


@pytest.fixture
def admin_login(db: None) -> Callable[..., Client]:
    """``admin_login(username, superuser=False, partners=(), manage=False)``: a logged-in
    admin client; with ``partners``, a partner staff user granted those partners."""

    def login(
        username: str,
        *,
        superuser: bool = False,
        partners: tuple[Partner, ...] = (),
        manage: bool = False,
        **fields: Any,
    ) -> Client:
        user_model = get_user_model()
        if superuser:
            user = user_model.objects.create_superuser(username, f"{username}@example.invalid")
        else:
            user = user_model.objects.create_user(username, is_staff=True, **fields)
        for granted in partners:
            grant_partner_access(user=user, partner=granted, manage=manage)
        client = Client()
        client.force_login(user)
        client.user = user  # type: ignore[attr-defined]
        return client

    return login
