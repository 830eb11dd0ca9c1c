import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "marketplace.settings")

application = get_wsgi_application()

# Refuse to serve with vault keys that cannot read this database back (see consent.checks).
from consent.checks import verify_vault_at_startup  # noqa: E402

verify_vault_at_startup()
