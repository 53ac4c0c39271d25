"""Every write of the automation app: workflows, switching them on and off, retries, reads
of notifications, and the engine's entry points for tasks."""

from __future__ import annotations

import secrets
from typing import Any

from django.db import transaction
from django.utils import timezone

from clm.automation import engine
from clm.automation.models import Enrollment, EnrollmentRule, Notification, Workflow
from clm.automation.steps import validate_goal, validate_steps, validate_trigger
from clm.core.errors import Conflict, PermissionDenied, ValidationFailed
from clm.customers.schemas import check_storable

FIELDS = ("name", "description", "trigger", "steps", "enrollment_rule", "reenroll_days", "goal")


def _clean(data: dict[str, Any], workflow: Workflow | None) -> dict[str, Any]:
    unknown = set(data) - set(FIELDS)
    if unknown:
        raise ValidationFailed(f"Unknown field '{sorted(unknown)[0]}'.", field=sorted(unknown)[0])
    for key, value in data.items():
        try:  # the editor posts free text and JSON: NUL is a database error on PostgreSQL
            check_storable(value)
        except ValueError as exc:
            raise ValidationFailed(f"{key.replace('_', ' ').capitalize()} {exc}.",
                                   field=key) from None
    merged = {f: getattr(workflow, f) for f in FIELDS} if workflow else {}
    merged.update(data)
    name = merged.get("name")
    name = name.strip() if isinstance(name, str) else ""
    if not name:
        raise ValidationFailed("Give the workflow a name.", field="name", code="required")
    if len(name) > 150:
        raise ValidationFailed("At most 150 characters.", field="name")
    if Workflow.objects.filter(name=name).exclude(pk=workflow.pk if workflow else None).exists():
        raise Conflict("A workflow with this name exists.", field="name", code="duplicate")
    description = str(merged.get("description") or "").strip()
    if len(description) > 500:
        raise ValidationFailed("At most 500 characters.", field="description")
    trigger, trigger_kind = validate_trigger(merged.get("trigger"))
    rule = merged.get("enrollment_rule") or EnrollmentRule.ONCE
    if rule not in EnrollmentRule.values:
        raise ValidationFailed(f"Enrollment rule is one of {', '.join(EnrollmentRule.values)}.",
                               field="enrollment_rule")
    days = merged.get("reenroll_days")
    if rule == EnrollmentRule.AFTER_DAYS:
        if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= 3650:
            raise ValidationFailed("Re-enroll after 1 to 3650 days.", field="reenroll_days")
    else:
        days = None
    return {"name": name, "description": description, "trigger": trigger,
            "trigger_kind": trigger_kind, "steps": validate_steps(merged.get("steps")),
            "enrollment_rule": rule, "reenroll_days": days,
            "goal": validate_goal(merged.get("goal"))}


@transaction.atomic
def workflow_create(*, data: dict[str, Any], actor=None, playbook: str | None = None) -> Workflow:
    """Create an inactive workflow from validated data (ValidationFailed names the field,
    e.g. `steps[2].template_id`)."""
    clean = _clean(data, None)
    now = timezone.now()
    return Workflow.objects.create(
        **clean, active=False, webhook_secret=secrets.token_hex(32), playbook=playbook,
        created_by=actor if actor is not None and actor.is_authenticated else None,
        created_at=now, updated_at=now)


@transaction.atomic
def workflow_update(*, workflow: Workflow, data: dict[str, Any], actor=None) -> Workflow:
    """Change a workflow. In-flight enrollments go on from their step position in the new
    step list (a position past the end completes them)."""
    clean = _clean(data, workflow)
    for key, value in clean.items():
        setattr(workflow, key, value)
    if clean["trigger"] != Workflow.objects.get(pk=workflow.pk).trigger:
        workflow.trigger_ran_on = None
    workflow.updated_at = timezone.now()
    workflow.save()
    return workflow


@transaction.atomic
def workflow_delete(*, workflow: Workflow, actor=None) -> None:
    """Delete a workflow and its enrollments; an active one must be paused first."""
    if workflow.active:
        raise Conflict("Pause the workflow before deleting it.", code="active")
    workflow.delete()


@transaction.atomic
def workflow_activate(*, workflow: Workflow, actor=None) -> Workflow:
    """Switch the workflow on. Its steps are validated again (a template or list may have
    gone since it was saved); enrollments held by the pause go on from where they were.

    A workflow acts on every contact that matches (and a webhook step sends their data out),
    so only a user who may see all contacts can switch one on.
    """
    from clm.accounts.models import Scope
    from clm.accounts.queries import user_scope

    if actor is not None and user_scope(actor) != Scope.ALL:
        raise PermissionDenied("Switching a workflow on needs access to all contacts, because "
                               "it acts on every contact that matches.", code="scope_too_narrow")
    _clean({}, workflow)
    if not workflow.steps:
        raise ValidationFailed("Add at least one step before switching the workflow on.",
                               field="steps", code="required")
    now = timezone.now()
    Workflow.objects.filter(pk=workflow.pk).update(active=True, updated_at=now)
    workflow.active = True
    return workflow


@transaction.atomic
def workflow_pause(*, workflow: Workflow, actor=None) -> Workflow:
    """Switch the workflow off: nobody new enrolls and no step runs until it is on again."""
    Workflow.objects.filter(pk=workflow.pk).update(active=False, updated_at=timezone.now())
    workflow.active = False
    return workflow


@transaction.atomic
def enrollment_retry(*, enrollment: Enrollment, actor=None) -> Enrollment:
    """Run a failed enrollment's failed step again (a new generation of step runs).

    An email the step already queued is not queued again (its outbox key is the same).
    """
    if enrollment.status != Enrollment.Status.FAILED:
        raise Conflict("Only a failed enrollment can be retried.", field="status",
                       code="not_failed")
    Enrollment.objects.filter(pk=enrollment.pk, status=Enrollment.Status.FAILED).update(
        status=Enrollment.Status.ACTIVE, generation=enrollment.generation + 1,
        wake_at=timezone.now(), finished_at=None, last_error="")
    enrollment.refresh_from_db()
    transaction.on_commit(lambda: _enqueue_run([enrollment.pk]))
    return enrollment


@transaction.atomic
def enrollment_stop(*, enrollment: Enrollment, actor=None) -> Enrollment:
    """End an open enrollment by hand."""
    who = actor.get_username() if actor is not None and actor.is_authenticated else "system"
    Enrollment.objects.filter(pk=enrollment.pk, status__in=engine.OPEN).update(
        status=Enrollment.Status.EXITED, finished_at=timezone.now(), wake_at=None,
        exit_reason=f"stopped by {who}"[:200])
    enrollment.refresh_from_db()
    return enrollment


def _enqueue_run(ids: list[int]) -> None:
    from clm.automation.tasks import automation_enrollments_run

    automation_enrollments_run.enqueue(ids)


@transaction.atomic
def notifications_mark_read(*, user, ids: list[int] | None = None) -> int:
    """Mark the user's notifications read (all, or those of `ids`); returns how many."""
    qs = Notification.objects.filter(user=user, read_at__isnull=True)
    if ids is not None:
        qs = qs.filter(pk__in=ids)
    return qs.update(read_at=timezone.now())


# Engine entry points for tasks (tasks hold no logic).

def events_process(*, event_ids: list[int]) -> engine.Stats:
    return engine.events_process(event_ids)


def tick() -> engine.Stats:
    return engine.tick()


def enrollments_run(*, ids: list[int]) -> engine.Stats:
    return engine.enrollments_run(ids)
