"""Read-only API over the consent ledger: signed checkpoints and the proofs behind them.

Anyone holding a valid API key may read checkpoints and consistency proofs (they reveal
sizes and hashes only). An entry's content goes only to the source whose receipt it
concerns or to the partner it names, with a key of that consent's mode (sandbox or live);
to anyone else it does not exist (404, not 403).
Hashes in proofs are lowercase hex; roots are given in base64 (as signed) and in hex.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from django.http import Http404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from consent import ledger, proofs
from consent.models import Checkpoint, ConsentGrant, LedgerEntry
from partners.authentication import client
from partners.errors import ApiError
from partners.pagination import SignedCursorPagination
from partners.query_params import positive_int_param
from partners.scoping import visible_to


def _latest() -> Checkpoint | None:
    return Checkpoint.objects.order_by("-signed_at", "-id").first()


def _checkpoint_of_size(size: int) -> Checkpoint:
    checkpoint = Checkpoint.objects.filter(tree_size=size).order_by("-signed_at", "-id").first()
    if checkpoint is None:
        raise Http404
    return checkpoint


def _size_param(request: Request, name: str, *, required: bool) -> int | None:
    """A checkpoint's tree size from the query string."""
    return positive_int_param(request, name, required=required)


def _may_read(request: Request, document: dict[str, Any]) -> bool:
    """The source whose receipt the entry concerns, or the partner it names, with a key of
    that receipt's mode (a sandbox key reads entries about sandbox consent only)."""
    data = document.get("data")
    if not isinstance(data, dict):
        return False
    receipt_id = data.get("receipt_id")
    if not isinstance(receipt_id, str):
        return False
    try:
        receipt = uuid.UUID(receipt_id)
    except ValueError:
        return False
    caller = client(request)
    grants = ConsentGrant.objects.filter(id=receipt)
    if caller.partner_id is not None:
        if data.get("partner_id") != str(caller.partner_id):
            return False
        return grants.filter(is_sandbox=caller.is_sandbox).exists()
    return visible_to(grants, caller, source="source_id", sandbox="is_sandbox").exists()


def _proof_unavailable() -> ApiError:
    return ApiError(
        "the stored ledger cannot produce this proof; run verify_consent_ledger",
        code="ledger_inconsistent",
        status_code=status.HTTP_409_CONFLICT,
    )


class CheckpointPagination(SignedCursorPagination):
    ordering = ("-signed_at", "-id")


class CheckpointListView(APIView):
    @extend_schema(
        tags=["ledger"],
        summary="Signed ledger checkpoints, newest first",
        responses={200: OpenApiTypes.OBJECT},
    )
    def get(self, request: Request) -> Response:
        paginator = CheckpointPagination()
        page = paginator.paginate_queryset(Checkpoint.objects.all(), request, view=self)
        assert page is not None
        return paginator.get_paginated_response([ledger.checkpoint_document(c) for c in page])


class CheckpointLatestView(APIView):
    @extend_schema(
        tags=["ledger"],
        summary="The latest signed checkpoint and the exact text its signature covers",
        responses={200: OpenApiTypes.OBJECT},
    )
    def get(self, request: Request) -> Response:
        checkpoint = _latest()
        if checkpoint is None:
            raise Http404
        return Response(ledger.checkpoint_document(checkpoint))


class LedgerEntryView(APIView):
    @extend_schema(
        tags=["ledger"],
        summary="A ledger entry with its inclusion proof (RFC 9162 §2.1.3)",
        parameters=[
            OpenApiParameter(
                "tree_size",
                int,
                description="size of the checkpoint to prove against (default: the latest)",
            )
        ],
        responses={200: OpenApiTypes.OBJECT},
    )
    def get(self, request: Request, seq: int) -> Response:
        # Entries are addressed by seq, so a pending one (no seq yet) is simply not found.
        entry = LedgerEntry.objects.filter(seq=seq).first()
        if entry is None or entry.canonical is None:
            raise Http404
        try:
            document = json.loads(entry.canonical)
        except ValueError:
            raise Http404 from None
        if not isinstance(document, dict) or not _may_read(request, document):
            raise Http404
        size = _size_param(request, "tree_size", required=False)
        checkpoint = _latest() if size is None else _checkpoint_of_size(size)
        if checkpoint is None or seq >= checkpoint.tree_size:
            raise Http404  # not covered by a signed checkpoint (yet)
        try:
            [proof] = proofs.entry_inclusion_proofs(seqs=[seq], tree_size=checkpoint.tree_size)
        except proofs.ProofUnavailable:
            raise _proof_unavailable() from None
        return Response(
            {
                "seq": entry.seq,
                "kind": entry.kind,
                "canonical": entry.canonical,
                "leaf_hash": entry.leaf_hash,
                "inclusion_proof": {
                    "leaf_index": proof.leaf_index,
                    "tree_size": proof.tree_size,
                    "hashes": [h.hex() for h in proof.hashes],
                },
                "checkpoint": ledger.checkpoint_document(checkpoint),
            }
        )


class ConsistencyProofView(APIView):
    @extend_schema(
        tags=["ledger"],
        summary="Consistency proof between two checkpoints (RFC 9162 §2.1.4)",
        parameters=[
            OpenApiParameter("first", int, required=True, description="older checkpoint size"),
            OpenApiParameter("second", int, required=True, description="newer checkpoint size"),
        ],
        responses={200: OpenApiTypes.OBJECT},
    )
    def get(self, request: Request) -> Response:
        first = _size_param(request, "first", required=True)
        second = _size_param(request, "second", required=True)
        assert first is not None and second is not None
        if first > second:
            raise ApiError(
                "first must not be larger than second",
                code="validation_error",
                details={"first": ["must be <= second"]},
            )
        old, new = _checkpoint_of_size(first), _checkpoint_of_size(second)
        try:
            proof = proofs.checkpoint_consistency_proof(first=first, second=second)
        except proofs.ProofUnavailable:
            raise _proof_unavailable() from None
        return Response(
            {
                "first": ledger.checkpoint_document(old),
                "second": ledger.checkpoint_document(new),
                "hashes": [h.hex() for h in proof],
            }
        )
