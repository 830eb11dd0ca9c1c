"""A stream of referrals through a real broker outage: a Redis of the test's own (port 6390)
is stopped during intake and started again; a real Celery worker then works the outbox off.
Every client holds its 201, every referral ends terminal, no lead is posted twice."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from django.db import connection
from rest_framework.test import APIClient

from marketplace import outbox, tasks
from marketplace.celery import app as celery_app
from marketplace.models import Lead, LeadStatus, OutboxMessage, Referral, ReferralStatus
from tests.conftest import SimulatedPartner
from tests.factories import referral_payload
from tests.marketplace.conftest import api_post

pytestmark = [pytest.mark.postgres, pytest.mark.real_worker]

ROOT = Path(__file__).resolve().parent.parent.parent
PORT = 6390
BROKER = f"redis://127.0.0.1:{PORT}/0"
REFERRALS = 6
WORKER_OPTIONS = ["-Q", "ping,post,default", "--pool", "solo", "--without-gossip", "-l", "warning"]


class OwnRedis:
    """A redis-server this test starts and stops (never the shared one)."""

    def __init__(self) -> None:
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(PORT), "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
        )
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", PORT), 0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None


def _point_celery_at(url: str) -> None:
    celery_app.conf.task_always_eager = False
    celery_app.conf.broker_url = url
    celery_app._pool = None
    celery_app.amqp._producer_pool = None


@pytest.fixture
def redis(monkeypatch: pytest.MonkeyPatch) -> Iterator[OwnRedis]:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    try:
        socket.create_connection(("127.0.0.1", PORT), 0.2).close()
        pytest.skip(f"port {PORT} is taken")
    except OSError:
        pass
    previous = (celery_app.conf.task_always_eager, celery_app.conf.broker_url)
    monkeypatch.setenv("CELERY_BROKER_URL", BROKER)  # Celery prefers it to its settings
    own = OwnRedis()
    own.start()
    _point_celery_at(BROKER)
    yield own
    own.stop()
    celery_app.conf.task_always_eager, celery_app.conf.broker_url = previous
    celery_app._pool = None
    celery_app.amqp._producer_pool = None


def _start_worker() -> subprocess.Popen[bytes]:
    db = connection.settings_dict
    env = {
        **os.environ,
        "DATABASE_URL": (
            f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"
        ),
        "CELERY_BROKER_URL": BROKER,
    }
    return subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "marketplace", "worker", *WORKER_OPTIONS],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


@pytest.mark.django_db(transaction=True)
def test_referrals_sent_while_the_broker_is_down_get_201_and_all_end_distributed(
    redis: OwnRedis,
    simulator_factory: Callable[..., SimulatedPartner],
    source_client: APIClient,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A message whose publish failed is due again at once, not 5 s later: no waiting.
    monkeypatch.setattr(outbox, "RETRY_UNPUBLISHED", timedelta(0))
    sims = [simulator_factory(), simulator_factory()]
    bodies = [referral_payload(source_reference=f"OUT-{i}") for i in range(REFERRALS)]

    redis.stop()
    first = [
        api_post(source_client, b, **{"Idempotency-Key": f"k{i}"}) for i, b in enumerate(bodies)
    ]
    again = [
        api_post(source_client, b, **{"Idempotency-Key": f"k{i}"}) for i, b in enumerate(bodies)
    ]

    assert [r.status_code for r in first] == [201] * REFERRALS, [r.content for r in first]
    assert [r.status_code for r in again] == [201] * REFERRALS, [r.content for r in again]
    assert [r.json() for r in again] == [r.json() for r in first]
    assert Referral.objects.count() == REFERRALS
    assert not OutboxMessage.objects.filter(published_at__isnull=False).exists()

    redis.start()
    assert tasks.sweep_outbox.apply(throw=True).result["published"] == REFERRALS
    worker = _start_worker()
    try:
        deadline = time.monotonic() + 120
        while (
            Referral.objects.filter(status=ReferralStatus.ROUTED).exists()
            and time.monotonic() < deadline
        ):
            assert worker.poll() is None, worker.stdout.read().decode() if worker.stdout else ""
            time.sleep(0.5)
    finally:
        worker.terminate()
        worker.wait(timeout=30)

    statuses = set(Referral.objects.values_list("status", flat=True))
    assert statuses == {ReferralStatus.DISTRIBUTED}
    assert set(Lead.objects.values_list("status", flat=True)) == {LeadStatus.DELIVERED}
    assert not OutboxMessage.objects.filter(done_at__isnull=True).exists()
    # Each partner got each applicant once: one post per lead, none twice.
    for sim in sims:
        posted = sim.simulator.stats()[sim.partner.slug]["posts"]
        assert posted == Lead.objects.filter(partner=sim.partner).count() == REFERRALS
