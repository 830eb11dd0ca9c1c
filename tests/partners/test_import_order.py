"""Every module DRF's settings name loads first in a fresh process.

DRF imports its view module, which reads the parser setting, which imports our parser; a
module on that path that imported DRF's views at the top made a cycle. The web process never
saw it (views load in another order), but a Celery worker's system checks import the
pagination class first, and every worker died at startup.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings

ROOT = Path(__file__).resolve().parents[2]


def _drf_setting_modules() -> list[str]:
    names: set[str] = set()
    for value in settings.REST_FRAMEWORK.values():
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, str) and item.startswith("partners."):
                names.add(item.rsplit(".", 1)[0])
    return sorted(names)


@pytest.mark.parametrize("module", _drf_setting_modules())
def test_module_named_by_drf_settings_imports_first_in_a_fresh_process(module: str) -> None:
    code = (
        "import django, importlib; django.setup(); "
        f"importlib.import_module({module!r}); "
        "from django.core.management import call_command; call_command('check')"
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "marketplace.settings"}
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]


def test_the_modules_named_include_the_parser_and_the_pagination() -> None:
    assert {"partners.parsers", "partners.pagination"} <= set(_drf_setting_modules())
