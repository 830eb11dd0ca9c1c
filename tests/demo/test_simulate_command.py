"""``simulate`` (what ``make run`` calls) draws its progress through the applicants on a
terminal and nothing off one, prints the same report either way, and ends with one demo
applicant's phone number that the compliance search finds."""

from __future__ import annotations

import io
import re
import socket
from pathlib import Path
from typing import Any

import pytest
from django.core.management import CommandError, call_command

from consent import compliance
from marketplace.models import Referral
from tests.terminal import NotATerminal, pseudo_terminal

TRY_PHONE = re.compile(r"^Try the compliance search .* with phone (\+86 \d{11})\.$", re.M)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


SIMULATOR_PORT = _free_port()  # the demo partners' endpoints are seeded for this port


def _simulate(*args: str, stderr: Any) -> str:
    out = io.StringIO()
    call_command(
        "simulate", "--seed", "3", "--simulator-port", str(SIMULATOR_PORT), *args,
        stdout=out, stderr=stderr,
    )  # fmt: skip
    return out.getvalue()


@pytest.fixture
def demo_world(settings: Any, tmp_path: Path) -> None:
    settings.VAR_DIR = tmp_path
    call_command(
        "seed_demo", "--simulator-url", f"http://127.0.0.1:{SIMULATOR_PORT}", stdout=io.StringIO()
    )


# PostgreSQL only: the simulated partners answer from their own threads and post their
# outcomes back at once, and the test database on SQLite (in memory, shared cache) locks
# whole tables ("database table is locked") instead of waiting, so a few intakes fail at
# random. make run's file database (WAL, a 30 s busy timeout) waits as it should.
@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_simulate_shows_progress_per_applicant_on_a_terminal_only_and_a_phone_to_try(
    demo_world: None,
) -> None:
    plain_err = NotATerminal()
    plain_out = _simulate("--referrals", "3", stderr=plain_err)
    with pseudo_terminal() as terminal:
        tty_out = _simulate("--referrals", "4", stderr=terminal.stream)

    assert Referral.objects.count() == 7
    assert "Applicants" not in plain_err.getvalue()
    assert "Applicants" in terminal.text and "4/4" in terminal.text
    assert "Applicants" not in tty_out

    # Same report, line for line, apart from the numbers of each run and which statuses
    # its few referrals happened to reach (the simulated partners decide at random).
    def shape(text: str) -> list[str]:
        return [
            re.sub(r"[\d.]+", "#", re.sub(r"\{[^}]*\}", "{...}", line))
            for line in text.splitlines()
        ]

    assert shape(tty_out) == shape(plain_out)
    assert plain_out.splitlines()[0].startswith("Waiting for partners to report outcomes")

    # The last line: a demo applicant's number, which the compliance search finds.
    found = TRY_PHONE.findall(plain_out)
    assert len(found) == 1, plain_out
    assert plain_out.rstrip().endswith(found[0] + ".")
    (subject_id,) = compliance.find_subjects(phone=found[0])
    assert Referral.objects.filter(subject_id=subject_id).exists()


@pytest.mark.django_db
def test_a_taken_simulator_port_is_a_plain_message_not_a_traceback(demo_world: None) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])

        with pytest.raises(CommandError, match=f"port {port} is in use"):
            call_command("simulate", "--referrals", "1", "--simulator-port", port)


@pytest.mark.django_db
def test_a_simulator_port_the_partners_were_not_seeded_for_is_refused(demo_world: None) -> None:
    """Every post would fail to connect and the run end with all leads delivery_failed."""
    other = str(_free_port())
    with pytest.raises(CommandError, match=f"seeded to answer on port {SIMULATOR_PORT}"):
        call_command("simulate", "--referrals", "1", "--simulator-port", other)
    assert not Referral.objects.exists()
