"""Reads of the automation app: workflows, per-step counts, enrollments, notifications."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from django.db.models import Count, QuerySet

from clm.automation.models import Enrollment, Notification, StepRun, Workflow
from clm.automation.steps import STEP_TYPES


@dataclass
class StepStats:
    number: int  # 1-based, as in the editor
    type: str
    label: str
    entered: int = 0
    completed: int = 0
    waiting: int = 0
    running: int = 0
    failed: int = 0


def workflows_all() -> QuerySet[Workflow]:
    return Workflow.objects.order_by("name")


def enrollment_counts(workflow_ids: list[int]) -> dict[int, dict[str, int]]:
    """{workflow id: {status: count}} in one query."""
    out: dict[int, dict[str, int]] = defaultdict(dict)
    for wf_id, status, n in (Enrollment.objects.filter(workflow_id__in=workflow_ids)
                             .values_list("workflow_id", "status").annotate(n=Count("id"))
                             .order_by()):
        out[wf_id][status] = n
    return out


def step_stats(workflow: Workflow) -> list[StepStats]:
    """Per step: how many step runs entered it, completed, wait there, run, failed (one query).

    A retried step counts once per attempt generation.
    """
    rows = [StepStats(number=i + 1, type=s.get("type", "?"),
                      label=STEP_TYPES[s["type"]].label if s.get("type") in STEP_TYPES else "?")
            for i, s in enumerate(workflow.steps or [])]
    for index, status, n in (StepRun.objects.filter(workflow=workflow)
                             .values_list("step_index", "status").annotate(n=Count("id"))
                             .order_by()):
        if index >= len(rows):
            continue
        row = rows[index]
        row.entered += n
        if status == StepRun.Status.DONE:
            row.completed += n
        elif status == StepRun.Status.WAITING:
            row.waiting += n
        elif status == StepRun.Status.RUNNING:
            row.running += n
        elif status == StepRun.Status.FAILED:
            row.failed += n
    return rows


def enrollments_of(workflow: Workflow, contacts: QuerySet) -> QuerySet[Enrollment]:
    """The workflow's enrollments of contacts in `contacts` (the caller's visible ones)."""
    return (Enrollment.objects.filter(workflow=workflow, contact__in=contacts.values("pk"))
            .select_related("contact").order_by("-id"))


def notifications_for(user) -> QuerySet[Notification]:
    return Notification.objects.filter(user=user).select_related("contact", "workflow")
