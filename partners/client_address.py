"""The address a request came from, as far as this deployment can trust it.

Behind ``TRUSTED_PROXY_COUNT`` proxies (the load balancer, a CDN), ``REMOTE_ADDR`` is the
nearest proxy's address, and each proxy appends the address it was reached from to
``X-Forwarded-For``. The client's address is the entry the outermost trusted proxy appended:
counted from the right. Entries left of it are whatever the client sent and can be forged,
so they are never used. With no trusted proxy, ``REMOTE_ADDR`` is the client.

The admin login's lockout per address (django-axes) keys on this: the leftmost entry would
let one client rotate addresses at will, and ``REMOTE_ADDR`` behind a load balancer would
lock every user out together.
"""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest


def client_address(request: HttpRequest) -> str | None:
    proxies: int = settings.TRUSTED_PROXY_COUNT
    if proxies > 0:
        forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "")
        hops = [hop.strip() for hop in forwarded.split(",") if hop.strip()]
        if len(hops) >= proxies:
            return hops[-proxies]
    remote: str | None = request.META.get("REMOTE_ADDR")
    return remote
