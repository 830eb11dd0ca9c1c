"""REST API of the routing domain: referral intake (source keys) and partners' leads and
outcome events (partner keys). Views are thin: validate, call one service, serialise.

``referrals``: what a source sends and reads back (intake and a referral's leads);
``leads``: what a partner reads (its leads, their events) and the outcome event it reports.
"""

from __future__ import annotations

from marketplace.api.leads import (
    EventInput,
    LeadEventOutput,
    LeadFilter,
    PartnerLeadDetailOutput,
    PartnerLeadDetailView,
    PartnerLeadListView,
    PartnerLeadOutput,
    partner_leads,
)
from marketplace.api.referrals import (
    EMPLOYMENT_TYPES,
    LOAN_CURRENCIES,
    REFERRAL_EXAMPLE,
    ApplicantInput,
    ConsentInput,
    LoanInput,
    ReferralCreateView,
    ReferralDetailView,
    ReferralInput,
    ReferralLeadOutput,
    ReferralOutput,
    intake_response,
    source_referrals,
)

__all__ = [
    "EMPLOYMENT_TYPES",
    "LOAN_CURRENCIES",
    "REFERRAL_EXAMPLE",
    "ApplicantInput",
    "ConsentInput",
    "EventInput",
    "LeadEventOutput",
    "LeadFilter",
    "LoanInput",
    "PartnerLeadDetailOutput",
    "PartnerLeadDetailView",
    "PartnerLeadListView",
    "PartnerLeadOutput",
    "ReferralCreateView",
    "ReferralDetailView",
    "ReferralInput",
    "ReferralLeadOutput",
    "ReferralOutput",
    "intake_response",
    "partner_leads",
    "source_referrals",
]
