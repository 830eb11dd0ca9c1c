"""A lead whose failed post gave back its caps takes them again before it is sent again
(the partner portal's re-send), or the re-send is refused while there is no room."""

from __future__ import annotations

import pytest
from django.utils import timezone

from marketplace import caps, resend
from marketplace.models import CapCounter, CapKind, CapScope, Lead, LeadStatus
from partners.models import Product
from tests.billing.builders import LeadBuilder
from tests.factories import ProductFactory

pytestmark = pytest.mark.django_db


def awarded(builder: LeadBuilder, product: Product) -> Lead:
    lead = builder.lead(product=product)
    Lead.objects.filter(pk=lead.pk).update(status=LeadStatus.MATCHED, delivered_at=None)
    claim = caps.Claim(lead.id, lead.product_id, lead.partner_id, 1, None)
    assert caps.reserve([claim], is_sandbox=False) == set()
    return lead


def used_today(product: Product) -> int:
    row = CapCounter.objects.get(
        scope=CapScope.PRODUCT,
        owner_id=product.pk,
        kind=CapKind.DAY,
        period=timezone.now().date(),
    )
    return int(row.used)


def test_a_resent_lead_takes_its_cap_again_or_is_refused_while_the_cap_is_full() -> None:
    product = ProductFactory(daily_cap=1)
    builder = LeadBuilder()
    failed = awarded(builder, product)
    Lead.objects.filter(pk=failed.pk).update(status=LeadStatus.DELIVERY_FAILED)
    assert caps.release(lead_id=failed.id)
    other = awarded(builder, product)  # the room it gave back is taken
    assert used_today(product) == 1

    with pytest.raises(resend.ResendRefused, match="no room"):
        resend.resend(lead_id=failed.id)
    assert used_today(product) == 1

    Lead.objects.filter(pk=other.pk).update(status=LeadStatus.POST_REJECTED)
    assert caps.release(lead_id=other.id)
    resend.resend(lead_id=failed.id)
    assert used_today(product) == 1
    Lead.objects.filter(pk=failed.pk).update(status=LeadStatus.POST_REJECTED)
    assert caps.release(lead_id=failed.id)  # its new reservation can be given back again
    assert used_today(product) == 0
