"""generate_invoices draws a progress bar on a terminal (stderr), driven by the run itself
(partners drafted, then each invoice issued), and nothing off one; its stdout is the same
either way."""

from __future__ import annotations

import io
from datetime import timedelta

from django.core.management import call_command
from django.utils import timezone

from billing.invoicing import invoice_month
from billing.models import Invoice
from partners.models import Partner
from tests.billing.builders import LeadBuilder, current_period, post, report, schedule
from tests.factories import PartnerFactory
from tests.terminal import NotATerminal, pseudo_terminal


def _bill(leads: LeadBuilder, partners: list[Partner]) -> None:
    for partner in partners:
        lead = leads.lead(partner=partner)
        post(lead, report("accepted", timezone.now() - timedelta(minutes=30)))


def _partners(n: int) -> list[Partner]:
    made = [PartnerFactory() for _ in range(n)]
    for partner in made:
        schedule(partner)
    return made


def test_invoice_month_reports_partners_drafted_then_each_invoice_issued(
    leads: LeadBuilder,
) -> None:
    _bill(leads, _partners(3))
    seen: list[tuple[str, int, int]] = []

    run = invoice_month(
        period=current_period(),
        issue=True,
        progress=lambda stage, done, total: seen.append((stage, done, total)),
    )

    assert len(run.issued) == 3
    assert seen == [
        ("Partners drafted", 0, 3),
        ("Partners drafted", 3, 3),
        ("Invoices issued", 0, 3),
        ("Invoices issued", 1, 3),
        ("Invoices issued", 2, 3),
        ("Invoices issued", 3, 3),
    ]


def test_generate_invoices_shows_a_bar_on_a_terminal_and_nothing_off_one(
    leads: LeadBuilder,
) -> None:
    partners = _partners(2)
    _bill(leads, partners[:1])
    period = str(current_period())
    plain_out, plain_err = io.StringIO(), NotATerminal()
    call_command("generate_invoices", "--period", period, stdout=plain_out, stderr=plain_err)
    _bill(leads, partners[1:])
    tty_out = io.StringIO()
    with pseudo_terminal() as terminal:
        call_command(
            "generate_invoices", "--period", period, "--issue",
            stdout=tty_out, stderr=terminal.stream,
        )  # fmt: skip

    assert plain_err.getvalue() == ""
    assert "Invoices issued" in terminal.text and "2/2" in terminal.text
    assert "Invoices issued" not in tty_out.getvalue()
    assert plain_out.getvalue().splitlines()[0].startswith("made    ")
    lines = tty_out.getvalue().splitlines()
    assert [line[:8] for line in lines] == ["made    ", "issued  ", "issued  ", lines[-1][:8]]
    assert lines[-1].endswith("2 issued, 0 refused.")
    assert Invoice.objects.filter(status="issued").count() == 2
