from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from marketplace.experiments.review import review_running


class Command(BaseCommand):
    help = (
        "Apply the stop rule to every running experiment (sample ratio mismatch, a primary "
        "metric's always-valid interval excluding zero, or the maximum sample) and stop "
        "those it says to; --dry-run only reports. Celery beat runs the same every 15 "
        "minutes (marketplace.tasks.review_experiments). Promotion stays a person's decision."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--dry-run", action="store_true", help="report, stop nothing")

    def handle(self, *args: Any, **options: Any) -> None:
        for review in review_running(dry_run=options["dry_run"]):
            if not review.stop:
                self.stdout.write(f"{review.key}: continue ({review.referrals} referrals)")
            elif options["dry_run"]:
                self.stdout.write(f"{review.key}: would stop: {review.reason}")
            elif review.stopped:
                self.stdout.write(f"{review.key}: stopped: {review.reason}")
            else:
                self.stdout.write(f"{review.key}: already stopped meanwhile")
