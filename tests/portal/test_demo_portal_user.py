"""After ``make run`` (``seed_demo``) a partner's staff can try the portal: the command makes
a partner staff user of the first demo partner once and prints its password once."""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Any

from django.core.management import call_command
from django.test import Client
from django.urls import reverse

from demo.world import PARTNERS

LOGIN_LINE = re.compile(r"Partner portal login for (.+) \(shown once\): (\S+) / (\S+) at /portal/")


def _seed() -> str:
    out = io.StringIO()
    call_command("seed_demo", stdout=out)
    return out.getvalue()


def test_seed_demo_makes_one_portal_user_for_a_demo_partner(
    db: None, settings: Any, tmp_path: Path
) -> None:
    settings.VAR_DIR = tmp_path
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    match = LOGIN_LINE.search(_seed())
    assert match is not None
    partner_name, username, password = match.groups()
    assert partner_name == PARTNERS[0]["name"]
    client = Client()
    response = client.post(reverse("portal:login"), {"username": username, "password": password})
    assert response.status_code == 302
    home = client.get(reverse("portal:home")).content.decode()
    assert partner_name in home
    assert PARTNERS[1]["name"] not in home
    assert LOGIN_LINE.search(_seed()) is None  # shown once
