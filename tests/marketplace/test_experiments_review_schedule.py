"""The stop rule runs on celery beat: the scheduled task stops an experiment the rule
says to stop, with the rule's reason and the time, leaves a healthy one running, and a
second tick (or a person who stopped it first) changes nothing."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from django.conf import settings
from django.utils import timezone

from marketplace import tasks
from marketplace.celery import app
from marketplace.experiments import lifecycle
from marketplace.models import Experiment, ExperimentStatus, Referral
from tests.marketplace.test_experiments_results import _decide, _started

pytestmark = pytest.mark.django_db


def test_beat_runs_the_review_task() -> None:
    schedule = settings.CELERY_BEAT_SCHEDULE.values()
    entries = [e for e in schedule if e["task"].endswith("review_experiments")]
    assert len(entries) == 1
    assert entries[0]["task"] == tasks.review_experiments.name
    assert entries[0]["task"] in app.tasks  # beat sends a name a worker knows


def test_the_scheduled_review_stops_what_the_rule_says_once_with_reason_and_time(
    make_referral: Callable[..., Referral],
) -> None:
    broken = _started("broken")
    healthy = _started("healthy")
    for _ in range(60):
        _decide(make_referral(), broken, "control")  # every referral in one arm: SRM
    before = timezone.now()

    assert tasks.review_experiments.delay().get() == {"running": 2, "stopped": 1}

    broken.refresh_from_db()
    assert broken.status == ExperimentStatus.STOPPED
    assert broken.stop_reason.startswith("stop rule: sample ratio mismatch (p = ")
    assert broken.stopped_at is not None and before <= broken.stopped_at <= timezone.now()
    healthy.refresh_from_db()
    assert (healthy.status, healthy.stopped_at, healthy.stop_reason) == (
        ExperimentStatus.RUNNING,
        None,
        "",
    )

    # The next tick: nothing more to stop; the first reason and time stand.
    stopped_at = broken.stopped_at
    assert tasks.review_experiments.delay().get() == {"running": 1, "stopped": 0}
    broken.refresh_from_db()
    assert (broken.stopped_at, broken.status) == (stopped_at, ExperimentStatus.STOPPED)


def test_a_review_racing_a_person_keeps_the_persons_stop(
    make_referral: Callable[..., Referral],
) -> None:
    experiment = _started("raced")
    for _ in range(60):
        _decide(make_referral(), experiment, "control")
    # The person's stop lands between the review's read of the results and its stop.
    lifecycle.stop(experiment_id=experiment.pk, reason="stopped in the admin by ops")
    _, stopped = lifecycle.stop_running(experiment_id=experiment.pk, reason="stop rule: x")
    assert not stopped
    experiment = Experiment.objects.get(pk=experiment.pk)
    assert experiment.stop_reason == "stopped in the admin by ops"
