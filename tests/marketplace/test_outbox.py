"""Nothing is lost between a commit and a worker: the transactional outbox, its sweeper,
one message per referral, and every referral reaching a terminal status."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.apps import apps as django_apps
from django.db import OperationalError
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from marketplace import delivery, dispatch, outbox, tasks
from marketplace.celery import app as celery_app
from marketplace.models import (
    Lead,
    LeadStatus,
    OutboxMessage,
    Referral,
    ReferralStatus,
)
from partners.models import DeliveryMode, IdempotencyRecord
from tests.conftest import SimulatedPartner
from tests.factories import PartnerFactory, ProductFactory, referral_payload
from tests.marketplace.conftest import api_post

# Nothing listens here: publishing to it fails the way a stopped broker does.
DEAD_BROKER = "redis://127.0.0.1:1/0"


def _use_broker(url: str, *, eager: bool) -> None:
    celery_app.conf.task_always_eager = eager
    celery_app.conf.broker_url = url
    # Producer pools built for the previous URL would keep publishing there.
    celery_app._pool = None
    celery_app.amqp._producer_pool = None


@pytest.fixture
def broker_down(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[], None]]:
    """Celery pointed at a broker that refuses connections; call the yielded function to
    bring the broker "back" (eager: tasks run in-process, as a worker would run them)."""
    previous = (celery_app.conf.task_always_eager, celery_app.conf.broker_url)
    # Celery prefers this variable to its configuration.
    monkeypatch.setenv("CELERY_BROKER_URL", DEAD_BROKER)
    _use_broker(DEAD_BROKER, eager=False)
    yield lambda: _use_broker(previous[1], eager=True)
    _use_broker(previous[1], eager=previous[0])


def posts(sim: SimulatedPartner) -> int:
    return int(sim.simulator.stats()[sim.partner.slug]["posts"])


# A real transaction per request: on-commit work runs inside the request, as in production.
@pytest.mark.django_db(transaction=True)
def test_a_broker_outage_after_commit_still_answers_201_and_the_sweeper_delivers_later(
    simulator_factory: Callable[..., SimulatedPartner],
    source_client: APIClient,
    broker_down: Callable[[], None],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # An unpublished message is due again at once (not 5 s later): the test need not wait.
    monkeypatch.setattr(outbox, "RETRY_UNPUBLISHED", timedelta(0))
    sim = simulator_factory()
    body = referral_payload(source_reference="APP-OUTAGE-1")
    headers = {"Idempotency-Key": "outage-1"}

    first = api_post(source_client, body, **headers)
    retry = api_post(source_client, body, **headers)

    assert first.status_code == 201, first.content
    # The retry gets the stored 201 (not 409 duplicate_source_reference, not a second one).
    assert retry.status_code == 201, retry.content
    assert retry["Idempotent-Replayed"] == "true"
    assert retry.json() == first.json()
    referral = Referral.objects.get()
    assert referral.status == ReferralStatus.ROUTED
    (message,) = OutboxMessage.objects.all()
    assert (message.task, message.args) == (
        "marketplace.tasks.dispatch_referral",
        [str(referral.id)],
    )
    assert message.published_at is None and message.done_at is None
    assert posts(sim) == 0

    broker_down()  # the broker is back; the sweeper's next run finds the message due
    swept = tasks.sweep_outbox.apply(throw=True).result

    assert swept["published"] == 1
    message.refresh_from_db()
    assert message.published_at is not None and message.done_at is not None
    referral.refresh_from_db()
    assert referral.status == ReferralStatus.DISTRIBUTED
    assert Lead.objects.get().status == LeadStatus.DELIVERED
    assert posts(sim) == 1
    # Nothing is left for a later sweep: the partner is posted to once.
    assert tasks.sweep_outbox.apply(throw=True).result == {
        "published": 0,
        "settled": 0,
        "redriven": 0,
    }
    assert posts(sim) == 1


def _msg_arg(referral: Referral) -> str:
    return str(referral.id)


@pytest.mark.django_db
def test_intake_writes_one_message_per_referral_in_its_transaction(
    source_client: APIClient, django_capture_on_commit_callbacks: Any
) -> None:
    for _ in range(3):
        ProductFactory(partner=PartnerFactory())
    ProductFactory(
        partner=PartnerFactory(),
        delivery_mode=DeliveryMode.PING_POST,
        ping_url="http://127.0.0.1:9/ping",
    )

    with django_capture_on_commit_callbacks(execute=False):
        response = api_post(source_client, referral_payload())

    assert response.status_code == 201, response.content
    referral = Referral.objects.get()
    assert len(response.json()["leads"]) == 3  # three direct posts and an auction to come
    (message,) = OutboxMessage.objects.all()
    assert message.args == [_msg_arg(referral)]  # an id: no personal data
    assert message.referral_id == referral.id
    assert referral.settle_by is not None and referral.settle_by > timezone.now()


@pytest.mark.django_db
def test_a_referral_whose_partners_only_pull_is_distributed_at_intake_without_a_message(
    source_client: APIClient,
) -> None:
    ProductFactory(partner=PartnerFactory(), delivery_mode=DeliveryMode.PULL)

    response = api_post(source_client, referral_payload())

    assert response.status_code == 201, response.content
    assert response.json()["status"] == ReferralStatus.DISTRIBUTED
    assert not OutboxMessage.objects.exists()


@pytest.mark.django_db
def test_a_referral_whose_every_post_is_rejected_ends_no_match(
    simulator_factory: Callable[..., SimulatedPartner],
    source_client: APIClient,
    django_capture_on_commit_callbacks: Any,
) -> None:
    simulator_factory(accept_rate=0.0)

    with django_capture_on_commit_callbacks(execute=True):
        response = api_post(source_client, referral_payload())

    referral = Referral.objects.get(pk=response.json()["id"])
    assert Lead.objects.get().status == LeadStatus.POST_REJECTED
    assert (referral.status, referral.status_reason) == (
        ReferralStatus.NO_MATCH,
        "every post was rejected or failed",
    )
    assert not OutboxMessage.objects.filter(done_at__isnull=True).exists()


@pytest.mark.django_db
def test_a_post_retrying_keeps_its_referral_routed_until_the_retry_ends(
    simulator_factory: Callable[..., SimulatedPartner],
    source_client: APIClient,
    django_capture_on_commit_callbacks: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sim = simulator_factory()
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = api_post(source_client, referral_payload())
    referral = Referral.objects.get(pk=response.json()["id"])
    dispatch_message = OutboxMessage.objects.get()
    # Not eager from here: the dispatch queues the post, which is not run yet.
    monkeypatch.setattr("marketplace.tasks.deliver_lead.apply_async", lambda *args, **kwargs: None)
    with django_capture_on_commit_callbacks(execute=True):
        for callback in callbacks:
            callback()

    dispatch_message.refresh_from_db()
    assert dispatch_message.done_at is not None
    (post,) = OutboxMessage.objects.filter(task=tasks.deliver_lead.name)
    assert post.done_at is None
    referral.refresh_from_db()
    assert referral.status == ReferralStatus.ROUTED  # a post is still to come
    assert posts(sim) == 0


@pytest.mark.django_db
def test_the_sweeper_drives_an_overdue_referral_that_nothing_is_working_on(
    simulator_factory: Callable[..., SimulatedPartner],
    source_client: APIClient,
    django_capture_on_commit_callbacks: Any,
    admin_client: Client,
) -> None:
    sim = simulator_factory()
    with django_capture_on_commit_callbacks(execute=False):
        response = api_post(source_client, referral_payload())
    referral = Referral.objects.get(pk=response.json()["id"])
    # A worker died after its message was marked done but before the post was queued.
    long_ago = timezone.now() - timedelta(hours=1)
    OutboxMessage.objects.update(done_at=long_ago, created_at=long_ago)
    Referral.objects.filter(pk=referral.pk).update(settle_by=long_ago)

    listed = _admin_overdue_ids(admin_client)
    with django_capture_on_commit_callbacks(execute=True):
        swept = tasks.sweep_outbox.apply(throw=True).result

    assert listed == [referral.id]
    assert swept["redriven"] == 1
    referral.refresh_from_db()
    assert referral.status == ReferralStatus.DISTRIBUTED
    assert posts(sim) == 1
    assert _admin_overdue_ids(admin_client) == []


def _admin_overdue_ids(admin_client: Client) -> list[Any]:
    """The referrals the admin's "overdue" filter lists."""
    response = admin_client.get("/admin/marketplace/referral/", {"distribution": "overdue"})
    assert response.status_code == 200
    return [referral.id for referral in response.context["cl"].result_list]


@pytest.mark.django_db
def test_a_database_error_in_a_task_is_retried_not_dropped(
    simulator_factory: Callable[..., SimulatedPartner],
    source_client: APIClient,
    django_capture_on_commit_callbacks: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sim = simulator_factory()
    with django_capture_on_commit_callbacks(execute=False):
        response = api_post(source_client, referral_payload())
    lead = Lead.objects.get(referral_id=response.json()["id"])
    real_post_lead = delivery.post_lead
    calls: list[int] = []

    def restart_once(**kwargs: Any) -> delivery.Posted:
        calls.append(1)
        if len(calls) == 1:
            raise OperationalError("terminating connection due to administrator command")
        return real_post_lead(**kwargs)

    monkeypatch.setattr(delivery, "post_lead", restart_once)
    with django_capture_on_commit_callbacks(execute=True):
        tasks.deliver_lead.apply(args=[str(lead.id)])

    assert len(calls) == 2
    lead.refresh_from_db()
    assert lead.status == LeadStatus.DELIVERED
    assert posts(sim) == 1


@pytest.mark.django_db
def test_an_idempotency_record_left_running_by_a_dead_request_is_released_promptly(
    source_client: APIClient,
) -> None:
    body = referral_payload()
    first = api_post(source_client, body, **{"Idempotency-Key": "died"})
    record = IdempotencyRecord.objects.get(key="died")
    # As a request of the earlier design would have left it when its process died.
    IdempotencyRecord.objects.filter(pk=record.pk).update(
        state=IdempotencyRecord.State.RUNNING,
        response_status=None,
        created_at=timezone.now() - timedelta(minutes=1),
    )

    retry = api_post(source_client, body, **{"Idempotency-Key": "died"})

    assert first.status_code == 201
    assert retry.status_code == 201, retry.content  # not 409 for five minutes
    assert "Idempotent-Replayed" not in retry


@pytest.mark.django_db
def test_a_post_claimed_by_a_run_that_may_have_died_waits_for_the_claims_lease(
    make_referral: Callable[..., Referral],
) -> None:
    ProductFactory(partner=PartnerFactory())
    lead = make_referral().leads.get()
    assert dispatch.claim_wait(lead.id) is None  # matched: nothing in the way

    Lead.objects.filter(pk=lead.pk).update(
        status=LeadStatus.DELIVERING, claim_expires_at=timezone.now() + timedelta(seconds=30)
    )
    assert 25 < (dispatch.claim_wait(lead.id) or 0) <= 30

    Lead.objects.filter(pk=lead.pk).update(claim_expires_at=timezone.now() - timedelta(seconds=1))
    assert dispatch.claim_wait(lead.id) == 0.0  # run out: delivery takes it over now
    assert dispatch.leads_to_post(lead.referral_id, task_name=tasks.deliver_lead.name) == [lead.id]


@pytest.mark.django_db
def test_the_migration_settles_referrals_stored_as_routed_when_routed_was_an_end(
    make_referral: Callable[..., Referral],
) -> None:
    migration = importlib.import_module("marketplace.migrations.0011_outbox_and_terminal_referrals")
    ProductFactory(partner=PartnerFactory())
    delivered, waiting, rejected, blocked = (make_referral() for _ in range(4))
    for referral, status in [
        (delivered, LeadStatus.DELIVERED),
        (rejected, LeadStatus.POST_REJECTED),
        (blocked, LeadStatus.BLOCKED),
    ]:
        Lead.objects.filter(referral=referral).update(status=status)
    Referral.objects.update(settle_by=None)  # as the earlier intake stored them

    migration.settle_routed(django_apps, None)

    got = {r.pk: (r.status, r.settle_by is not None) for r in Referral.objects.all()}
    assert got == {
        delivered.pk: (ReferralStatus.DISTRIBUTED, False),
        waiting.pk: (ReferralStatus.ROUTED, True),  # a post still to come: the sweeper's
        rejected.pk: (ReferralStatus.NO_MATCH, False),
        blocked.pk: (ReferralStatus.WITHDRAWN, False),
    }


def _routed_a_minute_ago(
    source_client: APIClient, capture: Any, *, lead_status: LeadStatus
) -> Referral:
    """A referral taken in a minute ago whose messages are all done and whose lead is in
    ``lead_status`` (moved there by another path), with its deadline still far off."""
    with capture(execute=False):
        response = api_post(source_client, referral_payload())
    referral = Referral.objects.get(pk=response.json()["id"])
    a_minute_ago = timezone.now() - timedelta(minutes=1)
    Lead.objects.update(status=lead_status)
    OutboxMessage.objects.update(done_at=a_minute_ago, created_at=a_minute_ago)
    Referral.objects.filter(pk=referral.pk).update(settle_by=dispatch.settle_by(a_minute_ago))
    return referral


@pytest.mark.django_db
def test_the_sweeper_settles_a_referral_left_routed_once_nothing_is_left_to_happen(
    simulator_factory: Callable[..., SimulatedPartner],
    source_client: APIClient,
    django_capture_on_commit_callbacks: Any,
) -> None:
    simulator_factory()
    # Delivered by the partner's word after a lost answer: no task settled the referral.
    referral = _routed_a_minute_ago(
        source_client, django_capture_on_commit_callbacks, lead_status=LeadStatus.DELIVERED
    )

    swept = tasks.sweep_outbox.apply(throw=True).result

    assert swept["settled"] == 1
    referral.refresh_from_db()
    assert referral.status == ReferralStatus.DISTRIBUTED
    assert swept["redriven"] == 0


@pytest.mark.django_db
def test_the_sweeper_leaves_a_referral_with_work_in_flight_routed(
    simulator_factory: Callable[..., SimulatedPartner],
    source_client: APIClient,
    django_capture_on_commit_callbacks: Any,
) -> None:
    simulator_factory()
    referral = _routed_a_minute_ago(
        source_client, django_capture_on_commit_callbacks, lead_status=LeadStatus.DELIVERING
    )

    assert tasks.sweep_outbox.apply(throw=True).result["settled"] == 0
    referral.refresh_from_db()
    assert referral.status == ReferralStatus.ROUTED


def test_beat_runs_the_stuck_work_sweeper_and_workers_know_its_task() -> None:
    schedule = {entry["task"] for entry in celery_app.conf.beat_schedule.values()}
    assert {"marketplace.tasks.sweep_outbox", "marketplace.sweeps.sweep_stuck_work"} <= schedule
    celery_app.loader.import_default_modules()
    assert "marketplace.sweeps.sweep_stuck_work" in celery_app.tasks
