from __future__ import annotations

from tests.factories import referral_payload


def test_referral_routes_to_simulated_partner(
    source_client, simulator_factory, django_capture_on_commit_callbacks
) -> None:
    sim = simulator_factory()
    with django_capture_on_commit_callbacks(execute=True):
        response = source_client.post("/api/v1/referrals", referral_payload(), format="json")
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["status"] == "routed"
    assert [lead["partner_id"] for lead in body["leads"]] == [str(sim.partner.id)]
    assert sim.simulator.stats()[sim.partner.slug]["posts"] == 1
