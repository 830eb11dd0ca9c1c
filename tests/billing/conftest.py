from __future__ import annotations

import pytest

from partners.models import Partner
from tests.billing.builders import LeadBuilder, schedule
from tests.factories import PartnerFactory


@pytest.fixture
def leads(db: None) -> LeadBuilder:
    """Delivered leads to bill; ``leads.billed_lead()`` adds the default fee schedule."""
    return LeadBuilder()


@pytest.fixture
def partner(db: None) -> Partner:
    """A live partner billed on the default fee schedule (CPL 40, CPA 250, CNY)."""
    partner = PartnerFactory()
    schedule(partner)
    return partner
