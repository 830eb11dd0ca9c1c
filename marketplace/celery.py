"""Celery application. Eager (in-process) when no broker is configured."""

import os
from typing import Any

from celery import Celery
from celery.signals import worker_init

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "marketplace.settings")

app = Celery("marketplace")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@worker_init.connect
def refuse_unusable_vault_keys(**kwargs: Any) -> None:
    """A worker must not start with vault keys that cannot read the database back."""
    import django
    from django.apps import apps
    from django.core.exceptions import ImproperlyConfigured
    from django.db import connections

    if not apps.ready:
        django.setup()
    from consent.checks import verify_vault_at_startup

    try:
        verify_vault_at_startup()
    except ImproperlyConfigured as exc:
        # Celery logs and swallows exceptions from signal handlers; SystemExit stops it.
        raise SystemExit(f"refusing to start the worker: {exc}") from None
    finally:
        connections.close_all()  # do not hand this connection to forked pool processes
