from __future__ import annotations

import pytest

from tests.billing.builders import LeadBuilder


@pytest.fixture
def leads(db: None) -> LeadBuilder:
    """Delivered leads to bill; ``leads.billed_lead()`` adds the default fee schedule."""
    return LeadBuilder()
