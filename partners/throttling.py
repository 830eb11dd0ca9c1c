"""Rate limit per API key: DRF's sliding-window throttle, keyed by the key, in the cache.

Each key may carry its own ``rate_limit_per_minute``; without one, partner keys get
``settings.API_RATE_LIMIT_PER_MINUTE`` and source keys are not limited (the operator's
intake runs at about 1,000 referrals a second at peak). Over the limit the API answers 429
with ``Retry-After`` in the one error shape (DRF's ``Throttled``, see
partners.exception_handler).
The counters live in Django's cache: Redis when ``CACHE_URL`` is set, so every web process
counts together; per process otherwise.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from rest_framework.request import Request
from rest_framework.throttling import SimpleRateThrottle

from partners.authentication import ApiClient
from partners.models import ApiKey, KeyKind


def rate_limit_per_minute(api_key: ApiKey) -> int | None:
    """Requests per minute allowed for this key; None is unlimited."""
    if api_key.rate_limit_per_minute is not None:
        return api_key.rate_limit_per_minute
    if api_key.kind == KeyKind.PARTNER:
        return int(settings.API_RATE_LIMIT_PER_MINUTE)
    return None


class ApiKeyRateThrottle(SimpleRateThrottle):
    scope = "api_key"

    def get_rate(self) -> str | None:
        return None  # per key, decided in allow_request

    def allow_request(self, request: Request, view: Any) -> bool:
        user = request.user
        if not isinstance(user, ApiClient):
            return True  # unauthenticated: authentication answers first
        limit = rate_limit_per_minute(user.api_key)
        if limit is None:
            return True
        self.rate = f"{limit}/min"
        self.num_requests, self.duration = self.parse_rate(self.rate)
        return bool(super().allow_request(request, view))

    def get_cache_key(self, request: Request, view: Any) -> str | None:
        user = request.user
        if not isinstance(user, ApiClient):
            return None
        # The id and the random lookup prefix: a recycled id (tests, restored databases)
        # never inherits another key's history.
        ident = f"{user.api_key.pk}:{user.api_key.prefix}"
        return self.cache_format % {"scope": self.scope, "ident": ident}
