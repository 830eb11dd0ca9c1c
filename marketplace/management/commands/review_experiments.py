from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from marketplace.experiments import lifecycle
from marketplace.experiments.results import results
from marketplace.models import Experiment, ExperimentStatus


class Command(BaseCommand):
    help = (
        "Apply the stop rule to every running experiment (sample ratio mismatch, a primary "
        "metric's always-valid interval excluding zero, or the maximum sample) and stop "
        "those it says to; --dry-run only reports. Promotion stays a person's decision."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--dry-run", action="store_true", help="report, stop nothing")

    def handle(self, *args: Any, **options: Any) -> None:
        running = Experiment.objects.filter(status=ExperimentStatus.RUNNING).order_by("key")
        for experiment in running:
            found = results(experiment)
            if not found.advice.stop:
                self.stdout.write(f"{experiment.key}: continue ({found.total} referrals)")
                continue
            if options["dry_run"]:
                self.stdout.write(f"{experiment.key}: would stop: {found.advice.reason}")
                continue
            lifecycle.stop(experiment_id=experiment.pk, reason=found.advice.reason)
            self.stdout.write(f"{experiment.key}: stopped: {found.advice.reason}")
