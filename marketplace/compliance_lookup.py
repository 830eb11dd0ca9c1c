"""Referral ids for the compliance search: consent keeps subjects and grants, marketplace
keeps referrals, and consent may not import marketplace (layers), so marketplace registers
this resolver with ``consent.compliance`` when the app is ready (``MarketplaceConfig``)."""

from __future__ import annotations

import uuid

from marketplace.models import Referral

KIND = "referral"


def referral_subject(referral_id: uuid.UUID) -> uuid.UUID | None:
    """The subject a referral is about, in either key mode (compliance sees both)."""
    return Referral.objects.filter(pk=referral_id).values_list("subject_id", flat=True).first()
