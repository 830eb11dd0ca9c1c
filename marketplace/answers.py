"""What a partner's answer to a ping or a post says: one reading of the decision shape both
use (``{"decision": ..., "reason": ...}`` in a 200 JSON object), so the two cannot drift.
Pings add bids (``marketplace.pings``), posts add the partner's reference
(``marketplace.delivery``)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import httpx

from marketplace.models import AttemptOutcome
from partners import http


@dataclass(frozen=True, slots=True)
class Answer:
    decision: str = ""  # what the partner decided, when error is empty
    error: str = ""  # why the answer is unusable (an AttemptOutcome.ERROR reason)
    body: dict[str, Any] = field(default_factory=dict)


def read_answer(response: httpx.Response) -> Answer:
    """The partner's decision, or why its answer is unusable: anything but a 200 JSON
    object is an error with a reason a human can act on."""
    kind, reason = http.classify_response(response)
    if kind != http.Kind.DELIVERED:
        return Answer(error=reason)
    if response.status_code != 200:
        return Answer(error=f"http {response.status_code}")
    try:
        body = json.loads(response.content)
    except ValueError:
        return Answer(error="response is not JSON")
    if not isinstance(body, dict):
        return Answer(error="response is not a JSON object")
    decision = body.get("decision")
    return Answer(decision=decision if isinstance(decision, str) else "", body=body)


def rejection(answer: Answer) -> tuple[str, str]:
    """(outcome, reason) of a ``reject``: the partner's reason, or "rejected"."""
    return AttemptOutcome.FAILURE, str(answer.body.get("reason") or "rejected")[:200]
