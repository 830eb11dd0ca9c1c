"""Drive synthetic declined applicants through the whole flow over real HTTP."""

from __future__ import annotations

import json
import random
import socket
import time
from collections import Counter
from typing import Any
from urllib.parse import urlsplit

import httpx
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db.models import Count, Sum
from django.utils import timezone

from billing import lab_figures
from billing.invoicing import generate_invoices
from billing.models import Charge, CreditNote, EntryType, PendingFee
from billing.money import to_cents
from billing.periods import Period
from billing.stats import rollup_revenue
from consent import compliance, ledger
from demo.applicants import synthetic_referral
from demo.config import SimulatorConfigError, load_config
from demo.loopback import PlatformServer
from demo.server import PartnerSimulator
from demo.traffic import pay_some_invoices, post_corrections
from demo.world import var_path
from marketplace import learning
from marketplace.models import Lead, Referral
from marketplace.stats import NIGHTLY_DAYS, rollup_funnel
from partners.months import month_of
from partners.progress import progress_bar


class Command(BaseCommand):
    help = (
        "Send synthetic declined applicants through intake, routing, delivery to "
        "simulated partner lenders on loopback, their outcome events and billing."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--referrals", type=int, default=300)
        parser.add_argument("--seed", type=int, default=None)
        parser.add_argument("--simulator-port", type=int, default=8900)
        parser.add_argument(
            "--invoice", action="store_true", help="issue this month's invoices at the end"
        )
        parser.add_argument(
            "--only-if-empty",
            action="store_true",
            help="do nothing when referrals exist already (make run)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["referrals"] < 0:
            raise CommandError("--referrals must be zero or more")
        if options["only_if_empty"] and Referral.objects.exists():
            self.stdout.write("Referrals exist already: not simulating more.")
            return
        try:
            config = load_config(var_path("simulator.json"))
            demo = json.loads(var_path("demo.json").read_text())
            source_key = demo["source_key"]
        except (FileNotFoundError, SimulatorConfigError, KeyError, ValueError) as exc:
            raise CommandError(f"no usable demo set-up ({exc}); run seed_demo first") from None
        _port_free(options["simulator_port"])
        _same_port(demo.get("simulator_url"), options["simulator_port"])
        rng = random.Random(options["seed"])
        started = time.monotonic()
        statuses: Counter[int] = Counter()
        try_phone = ""
        with (
            PlatformServer() as platform,
            PartnerSimulator(
                config.lenders,
                api_base_url=platform.url,
                port=options["simulator_port"],
                seed=config.seed,
            ) as simulator,
            httpx.Client(base_url=platform.url, timeout=120) as client,
        ):
            with progress_bar(
                self,
                description="Applicants",
                total=options["referrals"],
                verbosity=options["verbosity"],
            ) as bar:
                for index in range(options["referrals"]):
                    body = synthetic_referral(rng, index)
                    response = client.post(
                        "/api/v1/referrals",
                        json=body,
                        headers={
                            "Authorization": f"Bearer {source_key}",
                            "Idempotency-Key": body["source_reference"],
                        },
                    )
                    statuses[response.status_code] += 1
                    if response.status_code == 201 and not try_phone:
                        try_phone = body["applicant"]["phone"]
                    bar.advance()
            self.stdout.write("Waiting for partners to report outcomes ...")
            simulator_idle = simulator.wait_idle(timeout=180)
            elapsed = time.monotonic() - started
            if not simulator_idle:
                self.stderr.write("Some partner postbacks were still pending at the end.")
            # Some partners return leads and reverse fundings before the month is invoiced
            # (they net on the invoice) and some after (credit notes).
            before = post_corrections(
                client, config.lenders, rng, return_share=0.05, reversal_share=0.05, tag="a"
            )
            self.stdout.write(f"Returns and reversals before invoicing: {dict(before)}")
            self._report(statuses, elapsed)
            if options["invoice"]:
                period = Period(month_of(timezone.now()))
                invoices = generate_invoices(period=period, issue=True)
                self.stdout.write(f"Invoices issued: {len(invoices)}")
                after = post_corrections(
                    client, config.lenders, rng, return_share=0.03, reversal_share=0.03, tag="b"
                )
                generate_invoices(period=period, issue=True)  # credit notes for those
                notes = CreditNote.objects.filter(issued_at__date=timezone.now().date()).count()
                self.stdout.write(f"Returns and reversals after invoicing: {dict(after)}")
                self.stdout.write(f"Credit notes issued today: {notes}")
                self.stdout.write(f"Payments: {dict(pay_some_invoices(rng))}")
        # The dashboard reads daily aggregates that celery beat keeps fresh; a demo run may
        # have no beat, so they are brought up to date here.
        rollup_funnel(days=NIGHTLY_DAYS)
        rollup_revenue(days=NIGHTLY_DAYS)
        lab_figures.refresh()  # running experiments' arms, as beat stores them
        self.stdout.write("Dashboard figures rolled up (see /admin/dashboard/).")
        # Beat refreshes routing's learned conversion counts every minute; without a
        # broker (make run) nothing would, and the next referrals would rank on priors.
        learned = learning.refresh_counts()
        self.stdout.write(f"Routing's conversion counts refreshed ({learned} rows).")
        checkpoint = ledger.make_checkpoint()
        self.stdout.write(f"Consent ledger checkpoint signed at size {checkpoint.tree_size}.")
        self._suggest_search(try_phone)

    def _suggest_search(self, phone: str) -> None:
        """Give compliance one applicant to look up. The number is the synthetic one this
        run made up and sent itself (nothing is read back out of the vault); the blind-index
        search the compliance page uses confirms it finds the subject before it is shown.
        Demo output on the operator's own terminal, once: never logged."""
        if phone and compliance.find_subjects(phone=phone):
            self.stdout.write(
                f"Try the compliance search (Admin > Subjects > Find an applicant) with phone "
                f"+86 {phone}."
            )

    def _report(self, statuses: Counter[int], elapsed: float) -> None:
        self.stdout.write(f"Intake responses: {dict(statuses)} in {elapsed:.1f}s")
        referrals = dict(Referral.objects.values_list("status").annotate(n=Count("id")))
        leads = dict(Lead.objects.values_list("status").annotate(n=Count("id")))
        # Per currency: a sum over CNY and USD amounts would be a relabel of its own.
        money = {
            f"{kind} {currency}": str(to_cents(total))
            for kind, currency, total in Charge.objects.values_list("kind", "currency")
            .annotate(total=Sum("amount"))
            .order_by("currency", "kind")
        }
        self.stdout.write(f"Referrals by status (all time): {referrals}")
        self.stdout.write(f"Leads by status (all time): {leads}")
        self.stdout.write(f"Charges by fee kind and currency (all time): {money}")
        self._report_conversions()

    def _report_conversions(self) -> None:
        """Fees priced from an amount in another currency: converted, never relabelled."""
        converted = (
            Charge.objects.filter(entry_type=EntryType.CHARGE)
            .exclude(source_currency="")
            .values_list("source_currency", "currency", "kind", "fx_rate")
            .annotate(n=Count("id"), source=Sum("source_amount"), booked=Sum("amount"))
            .order_by("source_currency", "currency", "kind", "fx_rate")
        )
        for source_currency, currency, kind, rate, n, source, booked in converted:
            self.stdout.write(
                f"Converted {kind}: {n} charge(s) priced from {source_currency} "
                f"{to_cents(source)} at {source_currency}->{currency} {rate.normalize():f}, "
                f"booked {currency} {to_cents(booked)}"
            )
        waiting = PendingFee.objects.filter(resolved_at__isnull=True).count()
        if waiting:
            self.stdout.write(f"Fees waiting for an exchange rate: {waiting}")


def _same_port(seeded_url: str | None, port: int) -> None:
    """The demo partners' endpoints point at the simulator URL given to ``seed_demo``: a
    simulator on another port would leave every post failing to connect (the run would
    end with all leads ``delivery_failed`` and no word why)."""
    if not seeded_url:
        return  # seeded before the URL was recorded
    seeded = urlsplit(seeded_url).port
    if seeded is not None and seeded != port:
        raise CommandError(
            f"the demo partners were seeded to answer on port {seeded} ({seeded_url}), not "
            f"{port}: run with --simulator-port {seeded} (stop make run's simulator first), "
            "or seed a fresh MARKETPLACE_VAR_DIR with seed_demo --simulator-url "
            f"http://127.0.0.1:{port}"
        )


def _port_free(port: int) -> None:
    """A plain message, not a traceback, when the simulator's port is taken (most often by
    ``make run``'s own simulator, still serving)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        # As the simulator's own server binds (http.server's allow_reuse_address): a port
        # that only a finished run's connections linger on (TIME_WAIT) is free, one that a
        # server listens on is not.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            raise CommandError(
                f"port {port} is in use (is make run's partner simulator still running?); "
                "stop it, or give another with --simulator-port"
            ) from None
