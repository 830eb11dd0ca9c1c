"""Delivery through a real Celery worker process consuming a real Redis broker."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from django.db import connection

from marketplace.celery import app as celery_app
from marketplace.models import (
    DeliveryAttempt,
    Lead,
    LeadStatus,
    OutboxMessage,
    Referral,
    ReferralStatus,
)
from tests.factories import referral_payload

pytestmark = [pytest.mark.postgres, pytest.mark.real_worker]

BROKER_URL = os.environ.get("CELERY_BROKER_URL") or "redis://127.0.0.1:6379/14"
ROOT = Path(__file__).resolve().parent.parent


def _broker_reachable() -> bool:
    parts = urlsplit(BROKER_URL)
    try:
        socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 6379), 1).close()
    except OSError:
        return False
    return True


@pytest.fixture
def broker() -> Iterator[str]:
    if not _broker_reachable():
        pytest.skip(f"no broker reachable at {BROKER_URL}")
    previous = (celery_app.conf.task_always_eager, celery_app.conf.broker_url)
    celery_app.conf.task_always_eager = False
    celery_app.conf.broker_url = BROKER_URL
    # Earlier (eager) tests may have built producer pools for the old URL: start afresh.
    celery_app._pool = None
    celery_app.amqp._producer_pool = None
    with celery_app.connection_for_write() as conn:
        for queue in ("ping", "post", "default"):
            conn.default_channel.queue_purge(queue) if _queue_exists(conn, queue) else None
    yield BROKER_URL
    celery_app.conf.task_always_eager, celery_app.conf.broker_url = previous


def _queue_exists(conn: object, queue: str) -> bool:
    try:
        conn.default_channel.queue_declare(queue, passive=True)  # type: ignore[attr-defined]
    except Exception:
        return False
    return True


@pytest.fixture
def worker(broker: str, transactional_db: None) -> Iterator[subprocess.Popen[bytes]]:
    db = connection.settings_dict
    env = {
        **os.environ,
        "DATABASE_URL": (
            f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"
        ),
        "CELERY_BROKER_URL": broker,
    }
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "marketplace",
            "worker",
            "-Q",
            "ping,post,default",
            "--pool",
            "solo",
            "--without-gossip",
            "--without-mingle",
            "-l",
            "warning",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    yield process
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()


def test_lead_is_posted_by_a_real_worker_through_the_broker(
    worker, source_client, simulator_factory
):
    sim = simulator_factory()
    response = source_client.post("/api/v1/referrals", referral_payload(), format="json")
    assert response.status_code == 201, response.json()
    lead = Lead.objects.get(pk=response.json()["leads"][0]["id"])
    deadline = time.monotonic() + 60
    while lead.status != LeadStatus.DELIVERED and time.monotonic() < deadline:
        assert worker.poll() is None, worker.stdout.read().decode() if worker.stdout else ""
        time.sleep(0.2)
        lead.refresh_from_db()
    assert lead.status == LeadStatus.DELIVERED
    assert DeliveryAttempt.objects.get(lead=lead).outcome == "success"
    assert sim.simulator.stats()[sim.partner.slug]["posts"] == 1
    # The referral's one message (dispatch_referral, on the ping queue) and the post it
    # queued are done, and so the referral is.
    referral = Referral.objects.get(pk=response.json()["id"])
    while referral.status == ReferralStatus.ROUTED and time.monotonic() < deadline:
        time.sleep(0.2)
        referral.refresh_from_db()
    assert referral.status == ReferralStatus.DISTRIBUTED
    assert not OutboxMessage.objects.filter(done_at__isnull=True).exists()
