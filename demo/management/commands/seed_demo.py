from __future__ import annotations

import secrets
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandParser
from django.db import transaction

from demo.world import PARTNERS, seed_demo
from partners.models import Partner
from partners.permissions import grant_partner_access

# The demo's partner staff user: manages the first demo partner in the partner portal.
PORTAL_USER = "partner-staff"


class Command(BaseCommand):
    help = (
        "Create the demo world (operator, eleven partner lenders, fees, exchange rates, "
        "consent text) once."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--simulator-url", default="http://127.0.0.1:8900")
        parser.add_argument("--api-base-url", default="http://127.0.0.1:8000")

    def handle(self, *args: Any, **options: Any) -> None:
        setup = seed_demo(
            simulator_url=options["simulator_url"], api_base_url=options["api_base_url"]
        )
        self.stdout.write("Demo data is in place (source key in var/demo.json).")
        if setup.admin_password:
            self.stdout.write(
                self.style.WARNING(f"Admin login (shown once): admin / {setup.admin_password}")
            )
        portal = _ensure_portal_user()
        if portal is not None:
            partner_name, password = portal
            self.stdout.write(
                self.style.WARNING(
                    f"Partner portal login for {partner_name} (shown once): "
                    f"{PORTAL_USER} / {password} at /portal/"
                )
            )


def _ensure_portal_user() -> tuple[str, str] | None:
    """A partner staff user of the first demo partner, made once (None when it exists)."""
    user_model = get_user_model()
    if user_model.objects.filter(username=PORTAL_USER).exists():
        return None
    partner = Partner.objects.filter(name=PARTNERS[0]["name"]).first()
    if partner is None:
        return None
    password = secrets.token_urlsafe(12)
    with transaction.atomic():
        user = user_model.objects.create_user(PORTAL_USER, password=password)
        grant_partner_access(user=user, partner=partner, manage=True)
    return partner.name, password
