"""Project package and routing domain. Celery app is imported so shared_task binds to it."""

from marketplace.celery import app as celery_app

__all__ = ["celery_app"]
