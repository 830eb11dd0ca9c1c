"""Outcomes partners report on their leads: idempotent, valid in any arrival order.

A lead's status is derived from the set of its events (returned > funded > approved >
accepted > rejected), never from the last one to arrive, so reordering changes nothing.

Events on a lead whose post's answer we lost (still being recorded, a worker killed
mid-post, a timeout, a reset, garbage) are taken at the partner's word when the disclosure
log shows the data was sent to it: the lead was delivered, and the event counts and is
billed like any other. Only a lead never posted to the partner is refused
(``lead_not_delivered``).

A *reversal* takes back one earlier event of the same lead (a cancelled funding, a return
sent by mistake): it names the partner's event_id in ``reverses``. The reversed event stays
stored (the history is append-only) but no longer counts: the status and the latest
outcome values are recomputed from the events still standing, and the same type may be
reported again. A reversal cannot itself be reversed (report the event again instead), and
an event is reversed at most once (a unique constraint decides races).

A *revenue* event reports what the partner earned on a funded loan over one period
(interest and fees actually collected, in ``amount``; the month in ``period``,
"YYYY-MM", by default the month of ``occurred_at``); billing charges the schedule's revenue
share on it. Rules: the lead must have a standing funded event (422 ``lead_not_funded``);
0 < amount <= the funded principal (``REVENUE_PRINCIPAL_BOUND`` times it: a sanity bound,
a year's interest and fees on a consumer loan stay well below its principal); several per
lead, at most one standing per period (409 ``duplicate_revenue_period``; reverse it and
report it again to correct it); it never changes the lead's status. A funding cannot be
reversed while revenue reported on it stands (422 ``revenue_reported``): reverse the
revenue events first.

Every amount carries its currency (``currency``: CNY, HKD, USD or EUR; by default the
referral's, i.e. the currency of the loan asked for). An event with an amount or a
principal (approved, funded, revenue) stores it; an event without one stores none, and
naming a currency on it is refused. Amounts in different currencies are never compared as
bare numbers: a principal checked against an approved amount, or revenue against the funded
principal, in another currency is refused (422 ``currency_mismatch``); billing converts
with a dated exchange rate, it never relabels.
"""

from __future__ import annotations

from marketplace.events.recording import (
    ANSWER_MAY_BE_LOST,
    OUTCOME_FIELDS,
    Recorded,
    record,
    record_event,
)
from marketplace.events.report import (
    CLOCK_SKEW,
    MAX_AMOUNT,
    MAX_APR,
    PERIOD_FORMAT,
    RETURN_REPORTING_GRACE,
    REVENUE_PRINCIPAL_BOUND,
    EventError,
    EventReport,
    carries_amount,
)
from marketplace.events.rules import STATUS_RANK, derive_status, standing

__all__ = [
    "ANSWER_MAY_BE_LOST",
    "CLOCK_SKEW",
    "MAX_AMOUNT",
    "MAX_APR",
    "OUTCOME_FIELDS",
    "PERIOD_FORMAT",
    "RETURN_REPORTING_GRACE",
    "REVENUE_PRINCIPAL_BOUND",
    "STATUS_RANK",
    "EventError",
    "EventReport",
    "Recorded",
    "carries_amount",
    "derive_status",
    "record",
    "record_event",
    "standing",
]
