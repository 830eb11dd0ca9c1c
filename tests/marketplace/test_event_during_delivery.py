"""A partner that reports on a lead before our delivery worker recorded the post's answer
gets a retryable 409 (with Retry-After), not a final refusal: its event is not lost."""

from __future__ import annotations

from marketplace.models import Lead, LeadEvent, LeadStatus
from tests.marketplace.conftest import error_body, report_event


def test_an_event_on_a_lead_still_being_delivered_is_retryable(client, lead: Lead) -> None:
    Lead.objects.filter(pk=lead.pk).update(status=LeadStatus.DELIVERING)

    early = report_event(client, lead, "accepted", "acc-early")

    assert early.status_code == 409
    assert error_body(early)["code"] == "delivery_in_progress"
    assert early.headers["Retry-After"] == "2"
    assert not LeadEvent.objects.filter(lead=lead).exists()

    # The worker records the post's answer; the partner sends the same event again.
    Lead.objects.filter(pk=lead.pk).update(status=LeadStatus.DELIVERED)
    again = report_event(client, lead, "accepted", "acc-early")

    assert again.status_code == 201
    assert LeadEvent.objects.filter(lead=lead, external_id="acc-early").count() == 1
