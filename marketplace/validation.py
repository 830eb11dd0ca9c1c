"""Rules that decide whether a referral may be stored at all: the applicant's age and the
time the consent evidence says it was collected. The intake API checks them field by field
(a 400 naming each field) and ``intake.create_referral`` checks them again before it writes
anything, so no other caller can store what the API refuses.

No message carries the value it refuses: birth dates are personal data.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta

from django.conf import settings

from consent.grants import ConsentEvidence
from consent.vault import ApplicantData
from marketplace.bands import age_on

# Operators' clocks drift; consent "collected" a little ahead of ours is still plausible.
CLOCK_SKEW = timedelta(minutes=5)


class IntakeRefused(ValueError):
    """A referral the platform must never store; ``field`` in the API's dotted style."""

    def __init__(self, message: str, *, field: str) -> None:
        super().__init__(message)
        self.field = field


def birth_date_problem(birth_date: date, *, today: date) -> str | None:
    """Why an applicant born on ``birth_date`` cannot be referred on ``today``, if so."""
    if birth_date >= today:
        return "Birth date must be in the past."
    age = age_on(birth_date, today)
    if age < settings.MIN_APPLICANT_AGE:
        # A minor's referral is never stored or routed (regulatory minimum age).
        return f"The applicant must be at least {settings.MIN_APPLICANT_AGE} years old."
    if age > settings.MAX_APPLICANT_AGE:
        return f"An age above {settings.MAX_APPLICANT_AGE} years is not plausible."
    return None


def collected_at_problem(collected_at: datetime, *, now: datetime) -> str | None:
    """Why consent said to be collected at ``collected_at`` is not credible evidence now."""
    if collected_at > now + CLOCK_SKEW:
        return "Consent cannot be collected in the future."
    if collected_at < now - timedelta(days=settings.CONSENT_MAX_AGE_DAYS):
        return (
            f"Consent must have been collected within the last "
            f"{settings.CONSENT_MAX_AGE_DAYS} days."
        )
    return None


def check_referral(*, applicant: ApplicantData, consent: ConsentEvidence, now: datetime) -> None:
    """Raise ``IntakeRefused`` for the first rule a referral breaks."""
    problem = birth_date_problem(applicant.birth_date, today=now.date())
    if problem:
        raise IntakeRefused(problem, field="applicant.birth_date")
    problem = collected_at_problem(consent.collected_at, now=now)
    if problem:
        raise IntakeRefused(problem, field="consent.collected_at")
