"""Cursor pages whose cursors the server signs: a forged or garbled cursor is a 400.

DRF's cursor is base64 of ``o=<offset>&r=<reverse>&p=<position>``: anyone could write one,
and a position that is not a valid value of the ordering field reached the database (a 500),
a garbled one was a 404. Here the cursor is ``django.core.signing`` over those three values,
salted with the path and the ordering, so only a cursor this server gave out for this list
is accepted, and its position is a value the server itself read from a row.
"""

from __future__ import annotations

from typing import Any

from django.core import signing
from rest_framework.pagination import Cursor, CursorPagination
from rest_framework.request import Request
from rest_framework.utils.urls import replace_query_param

from partners.errors import ApiError

_SALT = "partners.pagination.cursor"


class SignedCursorPagination(CursorPagination):
    """``CursorPagination`` with signed cursors; subclasses set the ordering."""

    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 500

    def paginate_queryset(
        self, queryset: Any, request: Request, view: Any = None
    ) -> list[Any] | None:
        self._path = request.path_info
        return super().paginate_queryset(queryset, request, view)

    def _signer_salt(self) -> str:
        return f"{_SALT}:{self._path}:{','.join(self.ordering)}"

    def encode_cursor(self, cursor: Cursor) -> str:
        assert self.base_url is not None  # set by paginate_queryset
        token = signing.dumps(
            [cursor.offset, int(cursor.reverse), cursor.position],
            salt=self._signer_salt(),
            compress=True,
        )
        return replace_query_param(self.base_url, self.cursor_query_param, token)

    def decode_cursor(self, request: Request) -> Cursor | None:
        token = request.query_params.get(self.cursor_query_param)
        if not token:  # absent or empty: the first page
            return None
        try:
            offset, reverse, position = signing.loads(token, salt=self._signer_salt())
        except (signing.BadSignature, ValueError, TypeError):
            raise ApiError(
                "Invalid cursor.",
                code="invalid_cursor",
                details={
                    self.cursor_query_param: [
                        "Use the next or previous link of a page as the server gave it."
                    ]
                },
            ) from None
        return Cursor(offset=offset, reverse=bool(reverse), position=position)


class NewestFirstPagination(SignedCursorPagination):
    """Stable cursor pages, newest first: new rows never shift a page a client is reading."""

    ordering = ("-created_at", "-id")
