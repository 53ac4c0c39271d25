"""Reads of the analytics app: the current model and the scores a user may see.

The purchase summary is read by clm.analytics.summary; reports by clm.analytics.reports.
"""

from __future__ import annotations

from django.db.models import QuerySet

from clm.analytics.models import ContactScore, RefreshRun


def current_run() -> RefreshRun | None:
    """The latest finished refresh (the models in force), or None."""
    return (RefreshRun.objects.filter(status=RefreshRun.Status.DONE)
            .order_by("-finished_at", "-pk").first())


def latest_run() -> RefreshRun | None:
    return RefreshRun.objects.order_by("-created_at", "-pk").first()


def active_run() -> RefreshRun | None:
    return (RefreshRun.objects.filter(status__in=[RefreshRun.Status.PENDING,
                                                  RefreshRun.Status.RUNNING])
            .order_by("-created_at", "-pk").first())


def scores_visible(user) -> QuerySet[ContactScore]:
    """Scores of the contacts `user` may see."""
    from clm.customers.queries import contacts_visible

    return ContactScore.objects.filter(contact__in=contacts_visible(user))
