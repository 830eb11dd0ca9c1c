from __future__ import annotations

import secrets
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandParser
from django.db import transaction

from demo.lab import seed_lab
from demo.world import PARTNERS, seed_demo
from partners.models import Partner
from partners.permissions import grant_partner_access

# The demo's partner staff user: manages the first demo partner in the partner portal.
PORTAL_USER = "partner-staff"
# The superuser seed_demo makes (demo.world); it promotes the demo's default strategy.
ADMIN_USER = "admin"


class Command(BaseCommand):
    help = (
        "Create the demo world (operator, eleven partner lenders, fees, exchange rates, "
        "consent text, and a strategy lab with one running experiment) once."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--simulator-url", default="http://127.0.0.1:8900")
        parser.add_argument("--api-base-url", default="http://127.0.0.1:8000")
        parser.add_argument(
            "--no-lab",
            action="store_true",
            help="no demo strategies or experiment (an empty strategy lab to set up by hand)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        setup = seed_demo(
            simulator_url=options["simulator_url"], api_base_url=options["api_base_url"]
        )
        self.stdout.write("Demo data is in place (source key in var/demo.json).")
        if setup.admin_password:
            self.stdout.write(
                self.style.WARNING(f"Admin login (shown once): admin / {setup.admin_password}")
            )
        if not options["no_lab"]:
            self._seed_lab()
        portal = _ensure_portal_user()
        if portal is not None:
            partner_name, password = portal
            self.stdout.write(
                self.style.WARNING(
                    f"Partner portal login for {partner_name} (shown once): "
                    f"{PORTAL_USER} / {password} at /portal/"
                )
            )

    def _seed_lab(self) -> None:
        admin = get_user_model().objects.filter(username=ADMIN_USER, is_superuser=True).first()
        if admin is None:  # a promotion names who made it: nobody to name, no lab
            self.stdout.write(f"No '{ADMIN_USER}' superuser: the demo strategy lab is not set up.")
            return
        lab = seed_lab(user=admin)
        experiment = lab.experiment
        if lab.not_started:
            self.stdout.write(
                self.style.WARNING(
                    f"Demo experiment {experiment.key} left a draft: {lab.not_started}"
                )
            )
        else:
            self.stdout.write(
                f"Strategy lab: experiment {experiment.key} is {experiment.status} "
                "(Admin > Experiments)."
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
