"""Simulated lender behaviour: one lender's knobs and its decisions, as pure functions.

No I/O and no state: every decision is a function of the lender's configuration, the
request and uniform draws in [0, 1) that the caller takes from the lender's seeded random
stream (see :mod:`demo.server`), so a given sequence of requests always gets the same
answers. Imports only the standard library and ``standardwebhooks`` (to check a secret).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from decimal import ROUND_CEILING, ROUND_DOWN, ROUND_FLOOR, Decimal, InvalidOperation
from typing import Any

from standardwebhooks.webhooks import Webhook

#: Keys that must never appear (at any depth) in a ping.
PII_KEYS: frozenset[str] = frozenset(
    {
        "full_name",
        "phone",
        "national_id",
        "birth_date",
        "address",
        "employer",
        "monthly_income",
        "applicant",
    }
)

_SLUG_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,99}$")
_CURRENCY_RE = re.compile(r"^[A-Z]{3}$")
CENT = Decimal("0.01")
_APR_UNIT = Decimal("0.0001")
POST_REJECT_REASONS = ("credit_policy", "affordability", "region_not_served", "capacity")
PING_REJECT_REASONS = ("no_appetite", "capacity", "price_floor")
UNDERWRITING_REJECT_REASONS = ("failed_verification", "credit_bureau", "affordability")


class SimulatorConfigError(ValueError):
    """A lender or simulator configuration is invalid (message is meant for humans)."""


def _as_rate(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | str | Decimal):
        raise SimulatorConfigError(f"{name} must be a number between 0 and 1, got {value!r}")
    try:
        rate = float(value)
    except ValueError:
        raise SimulatorConfigError(
            f"{name} must be a number between 0 and 1, got {value!r}"
        ) from None
    if not 0.0 <= rate <= 1.0:
        raise SimulatorConfigError(f"{name} must be between 0 and 1, got {value!r}")
    return rate


def _as_decimal(name: str, value: object) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, int | float | str | Decimal):
        raise SimulatorConfigError(f"{name} must be a decimal number, got {value!r}")
    try:
        result = Decimal(str(value)) if isinstance(value, float) else Decimal(value)
    except InvalidOperation:
        raise SimulatorConfigError(f"{name} must be a decimal number, got {value!r}") from None
    if not result.is_finite() or result < 0:
        raise SimulatorConfigError(f"{name} must be a finite number >= 0, got {value!r}")
    return result


def _as_seconds(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise SimulatorConfigError(f"{name} must be a number, got {value!r}")
    if value < 0:
        raise SimulatorConfigError(f"{name} must be >= 0, got {value!r}")
    return float(value)


@dataclass(frozen=True)
class SimulatedLender:
    """One simulated partner lender and its behaviour knobs.

    Rates are probabilities in [0, 1]. ``error_rate`` (answer 500), ``garbage_rate``
    (answer 200 with an HTML body), ``timeout_rate`` (hang ``hang_seconds``, then answer)
    and ``reset_rate`` (reset the TCP connection, no answer) are exclusive outcomes of one
    draw (their sum must be <= 1) and apply to pings and posts. With
    ``faults_after_decision`` a faulted *post* is decided first (and its outcomes reported
    as usual): the lender holds the lead although the platform lost its answer, as happens
    when a load balancer or proxy fails after the lender's own commit. A hang always
    decides, after the hang. ``duplicate_postbacks`` re-sends each outcome event that many
    more times (same ``event_id``, a new ``Idempotency-Key``), as lenders whose own queue
    delivers at least once do.
    Decimal fields accept ``Decimal``, ``str``, ``int`` or ``float``.
    """

    slug: str
    secret: str  # "whsec_<base64>"
    api_key: str | None = None  # None: no postbacks / acks
    latency_ms: float = 0
    accept_rate: float = 1.0
    bid_min: Decimal = Decimal("10.00")
    bid_max: Decimal = Decimal("50.00")
    ping_reject_rate: float = 0.0
    approval_rate: float = 1.0
    funding_rate: float = 1.0
    apr_min: Decimal = Decimal("0.1200")
    apr_max: Decimal = Decimal("0.2400")
    error_rate: float = 0.0
    garbage_rate: float = 0.0
    timeout_rate: float = 0.0
    reset_rate: float = 0.0
    hang_seconds: float = 30.0
    faults_after_decision: bool = False
    duplicate_postbacks: int = 0
    # Delay between a decision and the first postback (lenders are never instant; it also
    # keeps the platform from seeing an event before it has stored the post's response).
    outcome_delay_ms: float = 50
    # The currency this lender states on its bids and amounts; None: the one the platform
    # named (the ping's, the loan's). Set it to play a lender that bids in its own currency.
    currency: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.slug, str) or not _SLUG_RE.match(self.slug):
            raise SimulatorConfigError(
                f"slug must be letters, digits, '-' or '_' (not starting with '-'/'_'), "
                f"got {self.slug!r}"
            )
        if not isinstance(self.secret, str) or not self.secret.startswith("whsec_"):
            raise SimulatorConfigError(f"{self.slug}: secret must start with 'whsec_'")
        try:
            Webhook(self.secret)
        except Exception:
            raise SimulatorConfigError(
                f"{self.slug}: secret is not valid base64 after 'whsec_'"
            ) from None
        if self.api_key is not None and (not isinstance(self.api_key, str) or not self.api_key):
            raise SimulatorConfigError(f"{self.slug}: api_key must be a non-empty string or null")
        for name in (
            "accept_rate",
            "ping_reject_rate",
            "approval_rate",
            "funding_rate",
            "error_rate",
            "garbage_rate",
            "timeout_rate",
            "reset_rate",
        ):
            object.__setattr__(self, name, _as_rate(f"{self.slug}: {name}", getattr(self, name)))
        for name in ("bid_min", "bid_max", "apr_min", "apr_max"):
            object.__setattr__(self, name, _as_decimal(f"{self.slug}: {name}", getattr(self, name)))
        for name in ("latency_ms", "hang_seconds", "outcome_delay_ms"):
            object.__setattr__(self, name, _as_seconds(f"{self.slug}: {name}", getattr(self, name)))
        if self.currency is not None and (
            not isinstance(self.currency, str) or not _CURRENCY_RE.match(self.currency)
        ):
            raise SimulatorConfigError(
                f"{self.slug}: currency must be an ISO 4217 code (e.g. CNY) or null"
            )
        if self.bid_min > self.bid_max:
            raise SimulatorConfigError(f"{self.slug}: bid_min must be <= bid_max")
        if self.apr_min > self.apr_max:
            raise SimulatorConfigError(f"{self.slug}: apr_min must be <= apr_max")
        if self.apr_max >= 10:
            raise SimulatorConfigError(
                f"{self.slug}: apr_min/apr_max are fractions (0.2150 = 21.5%), got {self.apr_max}"
            )
        if self.error_rate + self.garbage_rate + self.timeout_rate + self.reset_rate > 1.0 + 1e-9:
            raise SimulatorConfigError(
                f"{self.slug}: error_rate + garbage_rate + timeout_rate + reset_rate must be <= 1"
            )
        if not isinstance(self.faults_after_decision, bool):
            raise SimulatorConfigError(f"{self.slug}: faults_after_decision must be true or false")
        if (
            isinstance(self.duplicate_postbacks, bool)
            or not isinstance(self.duplicate_postbacks, int)
            or not 0 <= self.duplicate_postbacks <= 10
        ):
            raise SimulatorConfigError(
                f"{self.slug}: duplicate_postbacks must be an integer from 0 to 10"
            )

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SimulatedLender:
        """Build from a JSON-like mapping; unknown or missing fields raise
        :class:`SimulatorConfigError`."""
        if not isinstance(data, Mapping):
            raise SimulatorConfigError(f"a lender must be a JSON object, got {data!r}")
        label = data.get("slug", "?")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise SimulatorConfigError(
                f"lender {label!r}: unknown field(s) {', '.join(unknown)} "
                f"(known: {', '.join(sorted(known))})"
            )
        missing = [name for name in ("slug", "secret") if name not in data]
        if missing:
            raise SimulatorConfigError(
                f"lender {label!r}: missing required field(s) {', '.join(missing)}"
            )
        try:
            return cls(**dict(data))
        except SimulatorConfigError:
            raise
        except (TypeError, ValueError) as exc:
            raise SimulatorConfigError(f"lender {label!r}: {exc}") from None


def find_pii(value: object, prefix: str = "") -> list[str]:
    """Paths (``a.b.0.c``) of every :data:`PII_KEYS` key in ``value``, at any depth."""
    found: list[str] = []
    if isinstance(value, dict):
        for key, item in value.items():
            path = f"{prefix}{key}"
            if key in PII_KEYS:
                found.append(path)
            found.extend(find_pii(item, path + "."))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found.extend(find_pii(item, f"{prefix}{index}."))
    return found


#: What a lender may do instead of answering normally (see :func:`fault_for`).
FAULTS: tuple[str, ...] = ("http500", "garbage", "hang", "reset")


def fault_for(lender: SimulatedLender, u: float) -> str | None:
    """The fault (one of :data:`FAULTS`) that draw ``u`` in [0, 1) picks, or None: the
    four rates are consecutive slices of [0, 1), so one draw decides."""
    edge = 0.0
    for fault, rate in zip(
        FAULTS,
        (lender.error_rate, lender.garbage_rate, lender.timeout_rate, lender.reset_rate),
        strict=True,
    ):
        edge += rate
        if u < edge:
            return fault
    return None


def pick(options: Sequence[str], u: float) -> str:
    return options[min(int(u * len(options)), len(options) - 1)]


def uniform_steps(low: Decimal, high: Decimal, step: Decimal, u: float) -> Decimal:
    """A value in [low, high] on the ``step`` grid, chosen by u in [0, 1)."""
    lo = (low / step).to_integral_value(rounding=ROUND_CEILING)
    hi = (high / step).to_integral_value(rounding=ROUND_FLOOR)
    if hi < lo:  # no grid point inside [low, high]
        return low
    count = int(hi - lo) + 1
    return ((lo + min(int(u * count), count - 1)) * step).quantize(step)


def ping_answer(
    lender: SimulatedLender,
    ping: Mapping[str, Any],
    *,
    u_reject: float,
    u_reason: float,
    u_bid: float,
) -> dict[str, str]:
    """A bid (in the lender's currency, else the ping's) or a reject with a reason."""
    if u_reject < lender.ping_reject_rate:
        return {"decision": "reject", "reason": pick(PING_REJECT_REASONS, u_reason)}
    bid = uniform_steps(lender.bid_min, lender.bid_max, CENT, u_bid)
    answer = {"decision": "bid", "bid": f"{bid:.2f}"}
    currency = lender.currency or ping.get("currency")
    if isinstance(currency, str):
        answer["currency"] = currency
    return answer


def post_decision(
    lender: SimulatedLender, *, u_accept: float, u_reason: float, u_reference: float
) -> dict[str, str]:
    """Accept (with the lender's own reference) or reject a posted lead."""
    if u_accept < lender.accept_rate:
        return {
            "decision": "accept",
            "reference": f"{lender.slug.upper()}-{int(u_reference * 16**10):010X}",
        }
    return {"decision": "reject", "reason": pick(POST_REJECT_REASONS, u_reason)}


@dataclass(frozen=True)
class OutcomeDraws:
    """The uniform draws that decide what happens to an accepted lead."""

    approve: float
    fund: float
    full: float  # >= 0.7: approve a bit less than asked
    cut: float  # how much less (80-99%)
    apr: float
    reason: float  # the underwriting reject reason


def outcome_events(
    lender: SimulatedLender,
    *,
    lead_id: str,
    requested: Decimal,
    currency: str | None,
    u: OutcomeDraws,
) -> list[dict[str, Any]]:
    """The events the lender reports for an accepted lead, in order: ``accepted``, then
    ``approved`` (maybe cut to 80-99% of the request) and maybe ``funded``, or ``rejected``.
    Event ids are stable per lead, so a replayed report is a duplicate to the platform;
    ``occurred_at`` is left empty for the sender to stamp at its first attempt."""
    bodies: list[dict[str, Any]] = [{"type": "accepted"}]
    if u.approve < lender.approval_rate:
        approved = requested.quantize(CENT, rounding=ROUND_DOWN)
        if u.full >= 0.7:  # 30%: a bit less than asked (80-99%)
            cut = (requested * (80 + min(int(u.cut * 20), 19)) / 100).quantize(
                CENT, rounding=ROUND_DOWN
            )
            approved = cut if cut > 0 else approved
        apr = uniform_steps(lender.apr_min, lender.apr_max, _APR_UNIT, u.apr)
        in_currency = {"currency": currency} if currency else {}
        bodies.append(
            {"type": "approved", "amount": f"{approved:.2f}", "apr": f"{apr:.4f}", **in_currency}
        )
        if u.fund < lender.funding_rate:
            bodies.append({"type": "funded", "principal": f"{approved:.2f}", **in_currency})
    else:
        bodies.append({"type": "rejected", "reason": pick(UNDERWRITING_REJECT_REASONS, u.reason)})
    return [
        {
            "event_id": f"{lender.slug}-{lead_id}-{extra['type']}",
            "type": extra["type"],
            "occurred_at": "",
            **extra,
        }
        for extra in bodies
    ]
