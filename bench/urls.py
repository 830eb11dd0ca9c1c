"""URLs for benchmarks: the platform plus a bare baseline endpoint in the same server."""

from __future__ import annotations

import json

from django.db import connection
from django.urls import include, path
from rest_framework.decorators import api_view, authentication_classes, permission_classes
from rest_framework.request import Request
from rest_framework.response import Response

BARE_TABLE = "bench_bare_insert"


@api_view(["POST"])
@authentication_classes([])
@permission_classes([])
def bare_insert(request: Request) -> Response:
    """The least a JSON endpoint can do: parse the body and INSERT it once."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {BARE_TABLE} (body) VALUES (%s) RETURNING id",  # noqa: S608
            [json.dumps(request.data)],
        )
        (row_id,) = cursor.fetchone()
    return Response({"id": row_id}, status=201)


urlpatterns = [
    path("bench/bare-insert", bare_insert),
    path("", include("marketplace.urls")),
]
