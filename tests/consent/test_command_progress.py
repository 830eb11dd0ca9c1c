"""verify_consent_ledger, export_consent_audit and rotate_keys draw a progress bar on a
terminal (stderr), driven by the work itself, and nothing anywhere else: their stdout is the
same byte for byte whether or not a terminal is attached."""

from __future__ import annotations

import functools
import io
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.db import transaction

from consent import crypto, ledger, vault
from consent.models import LedgerEntry
from tests.consent.conftest import MakeApplicant, MakeGrant, new_b64_key
from tests.terminal import NotATerminal, pseudo_terminal


def _run(name: str, *args: str, tty: bool) -> tuple[str, str]:
    """(stdout, what stderr showed) of one run, stderr on a real pty or on a plain stream."""
    out = io.StringIO()
    if not tty:
        err = NotATerminal()
        call_command(name, *args, stdout=out, stderr=err)
        return out.getvalue(), err.getvalue()
    with pseudo_terminal() as terminal:
        call_command(name, *args, stdout=out, stderr=terminal.stream)
    return out.getvalue(), terminal.text


@pytest.fixture
def ledger_of_grants(db: None, make_grant: MakeGrant) -> int:
    for _ in range(3):
        make_grant()
    ledger.make_checkpoint()
    return LedgerEntry.objects.filter(seq__isnull=False).count()


def test_verify_shows_a_bar_of_entries_on_a_terminal_and_nothing_off_one(
    ledger_of_grants: int,
) -> None:
    n = ledger_of_grants
    plain_out, plain_err = _run("verify_consent_ledger", tty=False)
    tty_out, shown = _run("verify_consent_ledger", tty=True)
    assert plain_err == ""
    assert "Ledger entries" in shown and f"{n}/{n}" in shown
    assert tty_out == plain_out
    assert plain_out.startswith(f"consent ledger OK: {n} entries")
    assert "Ledger entries" not in tty_out


def test_verbosity_zero_draws_no_bar_even_on_a_terminal(ledger_of_grants: int) -> None:
    _, shown = _run("verify_consent_ledger", "--verbosity", "0", tty=True)
    assert "Ledger entries" not in shown


def test_verify_reports_progress_after_each_batch_it_reads(
    ledger_of_grants: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    n = ledger_of_grants
    monkeypatch.setattr(ledger, "_entry_batches", functools.partial(ledger._entry_batches, 2))
    seen: list[tuple[int, int]] = []
    report = ledger.verify_ledger(progress=lambda done, total: seen.append((done, total)))
    assert report.ok
    expected = [(min(done, n), n) for done in range(2, n + 2, 2)]
    assert seen == expected


def test_export_shows_a_bar_of_inclusion_proofs_on_a_terminal(
    db: None, make_grant: MakeGrant, tmp_path: Path
) -> None:
    grant = make_grant()
    make_grant()
    ledger.make_checkpoint()
    subject = str(grant.subject_id)
    plain_out, plain_err = _run(
        "export_consent_audit", "--subject", subject, "--out", str(tmp_path / "a"), tty=False
    )
    tty_out, shown = _run(
        "export_consent_audit", "--subject", subject, "--out", str(tmp_path / "b"), tty=True
    )
    proved = len((tmp_path / "b" / "entries.jsonl").read_text().splitlines())
    assert proved >= 1
    assert plain_err == ""
    assert "Inclusion proofs" in shown and f"{proved}/{proved}" in shown
    assert tty_out == plain_out.replace(str(tmp_path / "a"), str(tmp_path / "b"))


def test_export_calls_progress_once_per_proof(
    db: None, make_grant: MakeGrant, tmp_path: Path
) -> None:
    from consent.audit_export import export_bundle

    grant = make_grant()
    ledger.make_checkpoint()
    seen: list[tuple[int, int]] = []
    summary = export_bundle(
        out_dir=tmp_path / "bundle",
        subject_id=grant.subject_id,
        progress=lambda done, total: seen.append((done, total)),
    )
    total = summary.entries
    assert seen == [(done, total) for done in range(total + 1)]


def _use_keys(settings: Any, value: str) -> None:
    settings.VAULT_MASTER_KEYS = value
    crypto._master_keys_for.cache_clear()
    vault._checked_key_ids.clear()


def test_rotate_keys_bar_counts_subject_keys_and_keeps_stdout(
    db: None, settings: Any, vault_keys: dict[str, str], make_applicant: MakeApplicant
) -> None:
    key_1 = f"test-1:{vault_keys['master']}"
    key_2, key_3 = f"test-2:{new_b64_key()}", f"test-3:{new_b64_key()}"
    for _ in range(5):
        with transaction.atomic():
            vault.store_subject(applicant=make_applicant(), is_sandbox=False)
    _use_keys(settings, f"{key_2},{key_1}")
    plain_out, plain_err = _run("rotate_keys", "--batch-size", "2", "-v", "2", tty=False)
    _use_keys(settings, f"{key_3},{key_2}")
    tty_out, shown = _run("rotate_keys", "--batch-size", "2", "-v", "2", tty=True)

    assert plain_err == ""
    assert "Subject keys" in shown and "5/5" in shown
    # The per-batch lines of -v 2 still go to stdout, in order, after the bar is done.
    assert tty_out.splitlines()[:3] == [
        "  batch 1: 2 re-wrapped",
        "  batch 2: 4 re-wrapped",
        "  batch 3: 5 re-wrapped",
    ]
    assert "re-wrapped 5 subject key(s) under 'test-3'" in tty_out
    assert tty_out == plain_out.replace("test-2", "test-3").replace("test-1", "test-2")
