"""``Cache-Control: no-store`` on every API and admin response.

API answers and admin pages carry personal data (consent receipts, referrals, leads,
subjects, audit exports) or secrets shown once (API keys, webhook secrets); no browser,
proxy or shared cache may keep a copy. The rule is by path rather than by view, so a new
view cannot forget it: everything under ``/api/`` and ``/admin/`` is no-store except the
public API schema and its docs page. Static assets live under ``/static/`` and are cached.
"""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse
from django.utils.cache import add_never_cache_headers

PRIVATE_PREFIXES = ("/api/", "/admin/", "/portal/")
PUBLIC_PREFIXES = ("/api/schema/", "/api/docs/")


class NoStoreMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        path = request.path_info
        if path.startswith(PRIVATE_PREFIXES) and not path.startswith(PUBLIC_PREFIXES):
            # no-cache, no-store, must-revalidate, private, max-age=0 (and Expires now):
            # replaces any weaker directive a view set.
            add_never_cache_headers(response)
        return response
