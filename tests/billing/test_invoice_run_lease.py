"""Invoice runs keep their progress in the database (every web process sees it, whatever
the cache) and hold a lease: a run whose worker died is failed once the worker has been
silent for longer than ``invoice_runs.LEASE``, with a message saying so, and finance can
start it again; the new run finishes the period."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.cache import cache
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from billing import invoice_runs, invoicing, tasks
from billing.models import Invoice, InvoiceRun, InvoiceStatus
from tests.billing.builders import LeadBuilder, current_period, post, report, schedule
from tests.factories import PartnerFactory, ProductFactory


class WorkerKilled(BaseException):
    """What a worker's death looks like from inside the task: nothing after it runs."""


def _staff(role: str) -> Any:
    user = get_user_model().objects.create_user(role, is_staff=True)
    user.groups.add(Group.objects.get(name=role))
    return user


def _client(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def finance(db: None) -> Any:
    return _staff("finance")


@pytest.fixture
def billed_partner(db: None) -> Any:
    partner = PartnerFactory()
    schedule(partner)
    lead = LeadBuilder().lead(product=ProductFactory(partner=partner))
    post(lead, report("accepted", timezone.now() - timedelta(minutes=5)))
    return partner


def _status(client: Client, run_id: str) -> dict[str, Any]:
    response = client.get(reverse("admin:billing_invoice_run_status", args=[run_id]))
    assert response.status_code == 200
    result: dict[str, Any] = response.json()
    return result


def _dead_run(finance: Any, monkeypatch: pytest.MonkeyPatch) -> str:
    """A run whose worker died while issuing (its drafts made, nothing issued)."""
    run_id = invoice_runs.new_run(period=current_period(), issue=True, user_id=finance.pk)

    def killed(*, invoice_id: Any, **kwargs: Any) -> Any:
        raise WorkerKilled

    with monkeypatch.context() as patch:
        patch.setattr(invoicing, "issue_invoice", killed)
        with pytest.raises(WorkerKilled):
            invoice_runs.run(run_id=run_id, period=current_period(), issue=True, user_id=finance.pk)
    return run_id


def _silent_for(run_id: str, quiet: timedelta) -> None:
    InvoiceRun.objects.filter(pk=run_id).update(heartbeat_at=timezone.now() - quiet)


def test_a_runs_progress_is_in_the_database_not_the_cache(
    finance: Any, billed_partner: Any, django_capture_on_commit_callbacks: Any
) -> None:
    client = _client(finance)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            reverse("admin:billing_invoice_generate"),
            {"period": str(current_period()), "issue": "on"},
        )
    run_id = response["Location"].rstrip("/").rsplit("/", 1)[-1]
    cache.clear()  # another web process, or a restarted one, has none of it

    status = _status(client, run_id)
    invoice = Invoice.objects.get(partner=billed_partner)
    assert (status["stage"], status["issued"]) == ("done", [invoice.number])
    run = InvoiceRun.objects.get(pk=run_id)
    assert run.started_by == finance and run.finished_at is not None


def test_a_run_whose_worker_died_is_failed_after_its_lease_and_can_start_again(
    finance: Any,
    billed_partner: Any,
    monkeypatch: pytest.MonkeyPatch,
    django_capture_on_commit_callbacks: Any,
) -> None:
    client = _client(finance)
    run_id = _dead_run(finance, monkeypatch)
    assert Invoice.objects.get(partner=billed_partner).status == InvoiceStatus.DRAFT
    assert _status(client, run_id)["stage"] == "issuing"  # what a dead worker leaves

    _silent_for(run_id, invoice_runs.LEASE - timedelta(seconds=30))
    assert _status(client, run_id)["stage"] == "issuing"  # within its lease: maybe slow

    _silent_for(run_id, invoice_runs.LEASE + timedelta(seconds=30))
    status = _status(client, run_id)
    assert status["stage"] == "failed"
    assert "stopped reporting" in status["error"] and "Start it again" in status["error"]
    page_url = reverse("admin:billing_invoice_run", args=[run_id])
    page = client.get(page_url).content.decode()
    assert 'id="invoice-run-again"' in page and 'id="invoice-run-again" hidden' not in page

    with django_capture_on_commit_callbacks(execute=True):
        again = client.post(page_url, {"again": "1"})
    assert again.status_code == 302
    new = InvoiceRun.objects.exclude(pk=run_id).get()
    assert again["Location"] == reverse("admin:billing_invoice_run", args=[new.pk.hex])
    invoice = Invoice.objects.get(partner=billed_partner)  # the dead run's draft, issued
    assert invoice.status == InvoiceStatus.ISSUED
    assert _status(client, new.pk.hex)["issued"] == [invoice.number]
    assert _status(client, run_id)["stage"] == "failed"  # the record stays


def test_beat_fails_only_runs_past_their_lease_and_a_late_message_does_nothing(
    finance: Any, billed_partner: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    dead = _dead_run(finance, monkeypatch)
    busy = _dead_run(finance, monkeypatch)
    _silent_for(dead, invoice_runs.LEASE + timedelta(minutes=1))
    _silent_for(busy, timedelta(seconds=5))

    assert tasks.expire_stale_invoice_runs() == 1
    assert tasks.expire_stale_invoice_runs() == 0
    assert InvoiceRun.objects.get(pk=dead).stage == "failed"
    assert InvoiceRun.objects.get(pk=busy).stage == "issuing"

    # The outbox publishes the dead run's message again: the run was claimed once, so it
    # stays failed and issues nothing.
    late = invoice_runs.run(run_id=dead, period=current_period(), issue=True, user_id=finance.pk)
    assert late["stage"] == "failed"
    assert Invoice.objects.get(partner=billed_partner).status == InvoiceStatus.DRAFT


def test_only_a_failed_run_starts_again_and_only_for_finance(
    finance: Any, billed_partner: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_id = _dead_run(finance, monkeypatch)
    page_url = reverse("admin:billing_invoice_run", args=[run_id])
    assert _client(_staff("ops")).post(page_url, {"again": "1"}).status_code == 403
    refused = _client(finance).post(page_url, {"again": "1"}, follow=True)
    assert "Only a failed run" in refused.content.decode()
    assert InvoiceRun.objects.count() == 1
